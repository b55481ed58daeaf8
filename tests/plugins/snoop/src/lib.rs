//! Test plugin: tries everything the sandbox should forbid, and what it should
//! allow, and replies on `test.snoop.out` with a JSON report.
//!
//! Each probe reports `{"ok": bool, "detail": "..."}`. Config `addr` is where
//! it tries to open a TCP connection (default `127.0.0.1:4222`).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use evhost_sdk::{Context, HandlerError, Message, Outgoing};
use serde::Serialize;

#[derive(Serialize)]
struct Probe {
    ok: bool,
    detail: String,
}

fn probe<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> Probe {
    match r {
        Ok(v) => Probe {
            ok: true,
            detail: format!("{v:?}"),
        },
        Err(e) => Probe {
            ok: false,
            detail: e.to_string(),
        },
    }
}

#[evhost_sdk::handler(subject = "test.snoop")]
fn handle(_msg: Message, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let addr = ctx
        .config("addr")
        .unwrap_or_else(|| "127.0.0.1:4222".to_string());
    let mut report = BTreeMap::new();

    report.insert("read_file", probe(std::fs::read_to_string("/etc/hostname")));
    report.insert(
        "read_dir_cwd",
        probe(std::fs::read_dir(".").map(|d| d.count())),
    );
    report.insert(
        "read_dir_root",
        probe(std::fs::read_dir("/").map(|d| d.count())),
    );
    report.insert(
        "write_file",
        probe(std::fs::write("snoop-was-here.txt", b"x")),
    );
    let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    report.insert(
        "env",
        Probe {
            ok: !env.is_empty(),
            detail: env.join(","),
        },
    );
    let args: Vec<String> = std::env::args().collect();
    report.insert(
        "args",
        Probe {
            ok: !args.is_empty(),
            detail: args.join(" "),
        },
    );
    report.insert(
        "tcp_connect",
        probe(std::net::TcpStream::connect(addr.as_str()).map(|s| s.peer_addr().ok())),
    );
    report.insert(
        "dns",
        probe(std::net::ToSocketAddrs::to_socket_addrs("localhost:80").map(|a| a.count())),
    );
    report.insert(
        "wall_clock",
        probe(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())
                .and_then(|d| {
                    // Later than 2020-01-01: a real clock, not a zero stub.
                    if d.as_secs() > 1_577_836_800 {
                        Ok(d.as_secs())
                    } else {
                        Err(format!("implausible time {d:?}"))
                    }
                }),
        ),
    );
    let start = Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(2));
    report.insert(
        "monotonic_clock",
        probe({
            let e = start.elapsed();
            if e.as_nanos() > 0 {
                Ok(e)
            } else {
                Err("monotonic clock did not move".to_string())
            }
        }),
    );
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    report.insert(
        "random",
        probe(
            getrandom::fill(&mut a)
                .and_then(|()| getrandom::fill(&mut b))
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    if a != b && a != [0; 16] {
                        Ok(a)
                    } else {
                        Err("random bytes repeat or are all zero".to_string())
                    }
                }),
        ),
    );
    Ok(vec![Outgoing::json("test.snoop.out", &report)?])
}
