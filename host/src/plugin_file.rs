//! Reading a file of the watched plugin folder. Whoever can write to the
//! folder should not be able to make the host block or read what it should
//! not: only regular files are read (a symlink, FIFO, socket or device is
//! refused without being opened for reading, so it neither blocks nor
//! leaks another file's bytes into an error), and at most a size cap.

use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The largest `.wasm` read (a Python component is about 40 MB).
pub const MAX_WASM_BYTES: u64 = 256 << 20;
/// The largest manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Why a plugin file was not read.
#[derive(Debug, thiserror::Error)]
pub enum PluginFileError {
    #[error("no such file")]
    NotFound,
    #[error(
        "it is a symbolic link; the plugin folder must hold regular files (copy the file in instead)"
    )]
    Symlink,
    #[error("it is not a regular file (a FIFO, socket, device or folder)")]
    NotRegular,
    #[error("it is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("cannot read it: {0}")]
    Io(std::io::Error),
}

/// The bytes of the regular file `path`, at most `max` of them.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, PluginFileError> {
    let file = OpenOptions::new()
        .read(true)
        // Not following a last-component symlink, and not waiting for a
        // FIFO's writer.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            _ if e.kind() == std::io::ErrorKind::NotFound => PluginFileError::NotFound,
            Some(libc::ELOOP) => PluginFileError::Symlink,
            _ => PluginFileError::Io(e),
        })?;
    let meta = file.metadata().map_err(PluginFileError::Io)?;
    if !meta.file_type().is_file() {
        return Err(PluginFileError::NotRegular);
    }
    if meta.len() > max {
        return Err(PluginFileError::TooLarge { max });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: never read more than the cap.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(PluginFileError::Io)?;
    if bytes.len() as u64 > max {
        return Err(PluginFileError::TooLarge { max });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.wasm");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read(&file, 5).unwrap(), b"12345");
        assert!(matches!(
            read(&file, 4),
            Err(PluginFileError::TooLarge { max: 4 })
        ));
        assert!(matches!(
            read(&dir.path().join("none.wasm"), 5),
            Err(PluginFileError::NotFound)
        ));

        let link = dir.path().join("link.wasm");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(read(&link, 5), Err(PluginFileError::Symlink)));

        // A FIFO is refused at once instead of blocking on its writer.
        let fifo = dir.path().join("fifo.wasm");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(read(&fifo, 5), Err(PluginFileError::NotRegular)));

        let sub = dir.path().join("sub.wasm");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            read(&sub, 5),
            Err(PluginFileError::NotRegular) | Err(PluginFileError::Io(_))
        ));
    }
}
