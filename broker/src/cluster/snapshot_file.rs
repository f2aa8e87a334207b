//! The bytes of a received snapshot file, encrypted at rest when the store
//! is (`storage::crypto`).
//!
//! Without encryption the file is the snapshot stream as received. With
//! it, every write becomes one frame: a big-endian u32 length and the
//! sealed bytes, bound to the file name and the frame's position, so frames
//! cannot be reordered, dropped from the middle or moved to another file.
//! A snapshot stream ends with its own end marker, so a file cut after a
//! whole frame is still detected as incomplete when it is read.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use crate::storage::crypto::AtRest;

/// Largest frame accepted when reading: a received chunk is about 1 MiB.
const MAX_FRAME_BYTES: usize = 64 << 20;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes a snapshot file, sealing each write when `at_rest` is given.
pub struct SnapshotFileWriter {
    file: File,
    name: String,
    at_rest: Option<AtRest>,
    frames: u64,
}

impl SnapshotFileWriter {
    pub fn create(path: &Path, at_rest: Option<AtRest>) -> io::Result<Self> {
        Ok(Self {
            file: File::create(path)?,
            name: file_name(path),
            at_rest,
            frames: 0,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(at_rest) = &self.at_rest else {
            return self.file.write_all(bytes);
        };
        let sealed = at_rest.seal_frame(&self.name, self.frames, bytes).map_err(io_err)?;
        let len = u32::try_from(sealed.len()).map_err(|_| io_err("snapshot chunk larger than 4 GiB"))?;
        self.file.write_all(&len.to_be_bytes())?;
        self.file.write_all(&sealed)?;
        self.frames += 1;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// The plaintext of a snapshot file written by [`SnapshotFileWriter`].
pub fn open(path: &Path, at_rest: Option<AtRest>) -> io::Result<Box<dyn Read + Send>> {
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    Ok(match at_rest {
        None => Box::new(file),
        Some(at_rest) => Box::new(SealedReader {
            file,
            name: file_name(path),
            at_rest,
            frames: 0,
            plain: Vec::new(),
            pos: 0,
        }),
    })
}

struct SealedReader {
    file: BufReader<File>,
    name: String,
    at_rest: AtRest,
    frames: u64,
    plain: Vec<u8>,
    pos: usize,
}

impl SealedReader {
    /// Reads and opens the next frame; `false` at the end of the file.
    fn next_frame(&mut self) -> io::Result<bool> {
        let mut len = [0u8; 4];
        match self.file.read_exact(&mut len) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(err) => return Err(err),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(io_err(format!(
                "snapshot file {} has a frame of {len} bytes, more than the limit",
                self.name
            )));
        }
        let mut sealed = vec![0u8; len];
        self.file.read_exact(&mut sealed)?;
        self.plain = self
            .at_rest
            .open_frame(&self.name, self.frames, &sealed)
            .map_err(io_err)?;
        self.pos = 0;
        self.frames += 1;
        Ok(true)
    }
}

impl Read for SealedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if !self.next_frame()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.plain.len() - self.pos);
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn at_rest() -> AtRest {
        let key = flymq_security::Keyring::generate_key_hex();
        AtRest::new(Arc::new(flymq_security::Keyring::parse(&key).expect("key")))
    }

    fn read_all(path: &Path, at_rest: Option<AtRest>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        open(path, at_rest)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn encrypted_files_hold_no_plaintext_and_read_back_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0000000000000001-00000000000000aa.snap");
        let at_rest = at_rest();
        let mut writer = SnapshotFileWriter::create(&path, Some(at_rest.clone())).expect("create");
        let chunks: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                format!("chunk {i} with MARKER-SNAPSHOT-PLAINTEXT ")
                    .repeat(100)
                    .into_bytes()
            })
            .collect();
        for chunk in &chunks {
            writer.write(chunk).expect("write");
        }
        writer.sync().expect("sync");
        let on_disk = std::fs::read(&path).expect("read");
        let marker = b"MARKER-SNAPSHOT-PLAINTEXT";
        assert!(!on_disk.windows(marker.len()).any(|w| w == marker));
        assert_eq!(read_all(&path, Some(at_rest.clone())).expect("open"), chunks.concat());

        // Another file name, or frames in another order: refused.
        let moved = dir.path().join("0000000000000002-00000000000000aa.snap");
        std::fs::copy(&path, &moved).expect("copy");
        assert!(read_all(&moved, Some(at_rest.clone())).is_err());
        let first_len = 4 + u32::from_be_bytes(on_disk[..4].try_into().expect("4")) as usize;
        let second_len = 4 + u32::from_be_bytes(on_disk[first_len..first_len + 4].try_into().expect("4")) as usize;
        let mut swapped = on_disk[first_len..first_len + second_len].to_vec();
        swapped.extend_from_slice(&on_disk[..first_len]);
        swapped.extend_from_slice(&on_disk[first_len + second_len..]);
        std::fs::write(&path, swapped).expect("write");
        assert!(read_all(&path, Some(at_rest)).is_err());
    }

    #[test]
    fn plaintext_files_are_the_stream_as_received() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("plain.snap");
        let mut writer = SnapshotFileWriter::create(&path, None).expect("create");
        writer.write(b"abc").expect("write");
        writer.write(b"def").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"abcdef");
        assert_eq!(read_all(&path, None).expect("open"), b"abcdef");
    }
}
