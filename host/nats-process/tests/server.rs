//! The kit against the real `nats-server`: it starts, from flags or a config
//! file, restarts on its port, stops, and says why when it cannot start.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use evhost_nats_process::{Error, NatsServer, Options, Port};

/// Connects and reads the server's `INFO` line.
fn info(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).expect("INFO");
    let _ = (&stream).write_all(b"PING\r\n");
    line
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

#[test]
fn starts_with_jetstream_restarts_on_its_port_and_stops() {
    let mut server = NatsServer::start(Options::default()).unwrap();
    let port = server.port();
    assert_ne!(port, 4222);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
    assert!(info(port).contains("\"jetstream\":true"), "{}", info(port));

    server.restart().unwrap();
    assert_eq!(server.port(), port, "restart keeps the port");
    assert!(info(port).starts_with("INFO "));
    assert!(
        server.store().is_dir(),
        "the store is in the server's folder"
    );

    server.stop();
    assert!(!accepts(port), "still accepting after stop()");
    let store = server.store();
    drop(server);
    assert!(!store.exists(), "the folder is removed on drop");
}

#[test]
fn a_config_file_is_added_to_listen_and_jetstream() {
    let server = NatsServer::start(Options {
        config: Some("authorization { token: \"s3cret\" }".to_string()),
        ..Options::default()
    })
    .unwrap();
    let info = info(server.port());
    assert!(info.contains("\"auth_required\":true"), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
}

#[test]
fn the_preferred_port_when_free() {
    let port = evhost_nats_process::free_port().unwrap();
    let server = NatsServer::start(Options {
        port: Port::Prefer(port),
        ..Options::default()
    })
    .unwrap();
    assert_eq!(server.port(), port);
    // Taken now: another server gets a free one.
    let other = NatsServer::start(Options {
        port: Port::Prefer(port),
        ..Options::default()
    })
    .unwrap();
    assert_ne!(other.port(), port);
}

#[test]
fn a_server_that_exits_at_start_is_an_error_with_its_log() {
    let err = NatsServer::start(Options {
        config: Some("this is { not a config".to_string()),
        ..Options::default()
    })
    .err()
    .expect("a broken config does not start");
    assert!(matches!(err, Error::Exited { .. }), "{err:?}");
    assert_eq!(err.to_string().lines().count(), 1, "{err}");
    assert!(!err.log().unwrap_or_default().is_empty(), "{err:?}");
}

#[test]
fn a_missing_executable_says_how_to_install_it() {
    let err = NatsServer::start(Options {
        exe: Some(Path::new("/nonexistent/nats-server").to_path_buf()),
        ..Options::default()
    })
    .err()
    .expect("no such executable");
    let text = err.to_string();
    assert!(text.contains("apt-get install nats-server"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}
