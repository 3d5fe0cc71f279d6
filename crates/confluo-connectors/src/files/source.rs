//! Opening files for reading: local files directly, objects through `object_store`, and
//! gzip or zstd input decompressed on the fly.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{ObjectStore, ObjectStoreExt};

use super::error::{FilesError, Result};
use super::listing::{FileLocation, SourceFile};
use super::options::Compression;

/// Opens the files of one listing.
#[derive(Debug, Clone)]
pub struct Opener {
    store: Option<Arc<dyn ObjectStore>>,
    handle: Option<tokio::runtime::Handle>,
}

impl Opener {
    /// An opener for local files.
    pub fn local() -> Self {
        Opener {
            store: None,
            handle: None,
        }
    }

    /// An opener for objects of `store`; blocking reads run on `handle`'s runtime.
    pub fn object_store(store: Arc<dyn ObjectStore>, handle: tokio::runtime::Handle) -> Self {
        Opener {
            store: Some(store),
            handle: Some(handle),
        }
    }

    /// Opens the raw bytes of a file.
    pub fn open_raw(&self, f: &SourceFile) -> Result<Box<dyn Read + Send>> {
        match &f.kind {
            FileLocation::Local(p) => {
                let file = File::open(p).map_err(|e| FilesError::Unreadable {
                    path: f.location.clone(),
                    message: e.to_string(),
                })?;
                Ok(Box::new(file))
            }
            FileLocation::Object(path) => {
                let (Some(store), Some(handle)) = (&self.store, &self.handle) else {
                    return Err(FilesError::Unreadable {
                        path: f.location.clone(),
                        message: "no object store configured".into(),
                    });
                };
                let result =
                    handle
                        .block_on(store.get(path))
                        .map_err(|e| FilesError::Unreadable {
                            path: f.location.clone(),
                            message: e.to_string(),
                        })?;
                Ok(Box::new(ObjectRead {
                    stream: result.into_stream(),
                    current: Bytes::new(),
                    handle: handle.clone(),
                    location: f.location.clone(),
                }))
            }
        }
    }

    /// Opens a file, decompressing it when its name or first bytes say gzip or zstd.
    /// `counter` counts the raw bytes read.
    pub fn open(
        &self,
        f: &SourceFile,
        compression: Compression,
        counter: Option<Arc<AtomicU64>>,
    ) -> Result<Box<dyn Read + Send>> {
        let raw = self.open_raw(f)?;
        let raw: Box<dyn Read + Send> = match counter {
            Some(c) => Box::new(CountingRead {
                inner: raw,
                counter: c,
            }),
            None => raw,
        };
        let mut buffered = BufReader::with_capacity(1 << 20, raw);
        let kind = match compression {
            Compression::Auto => {
                let lower = f.location.to_ascii_lowercase();
                if lower.ends_with(".gz") || lower.ends_with(".gzip") {
                    Compression::Gzip
                } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
                    Compression::Zstd
                } else {
                    let head = buffered.fill_buf().map_err(|e| FilesError::Unreadable {
                        path: f.location.clone(),
                        message: e.to_string(),
                    })?;
                    if head.starts_with(&[0x1f, 0x8b]) {
                        Compression::Gzip
                    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                        Compression::Zstd
                    } else {
                        Compression::None
                    }
                }
            }
            other => other,
        };
        Ok(match kind {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(buffered).map_err(|e| {
                    FilesError::Corrupt {
                        file: f.location.clone(),
                        message: format!("cannot start zstd decompression: {e}"),
                    }
                })?,
            ),
            _ => Box::new(buffered),
        })
    }

    /// Reads a whole (decompressed) file into memory.
    pub fn read_all(&self, f: &SourceFile, compression: Compression) -> Result<Vec<u8>> {
        let mut r = self.open(f, compression, None)?;
        let mut out = Vec::with_capacity(f.size as usize);
        r.read_to_end(&mut out).map_err(|e| read_error(f, e))?;
        Ok(out)
    }

    /// The bytes of a file for random access (Parquet footers and row groups).
    pub fn random_access(&self, f: &SourceFile) -> Result<RandomAccess> {
        match &f.kind {
            FileLocation::Local(p) => {
                File::open(p)
                    .map(RandomAccess::File)
                    .map_err(|e| FilesError::Unreadable {
                        path: f.location.clone(),
                        message: e.to_string(),
                    })
            }
            FileLocation::Object(_) => {
                let mut r = self.open_raw(f)?;
                let mut buf = Vec::with_capacity(f.size as usize);
                r.read_to_end(&mut buf).map_err(|e| read_error(f, e))?;
                Ok(RandomAccess::Bytes(Bytes::from(buf)))
            }
        }
    }
}

/// A file's bytes, readable at any offset.
#[derive(Debug)]
pub enum RandomAccess {
    /// A local file.
    File(File),
    /// A downloaded object.
    Bytes(Bytes),
}

/// An I/O error while reading a file, naming it.
pub fn read_error(f: &SourceFile, e: std::io::Error) -> FilesError {
    let kind = e.kind();
    let message = e.to_string();
    if kind == std::io::ErrorKind::InvalidData
        || kind == std::io::ErrorKind::InvalidInput
        || message.contains("corrupt")
        || message.contains("invalid")
    {
        FilesError::Corrupt {
            file: f.location.clone(),
            message: format!("cannot decompress: {message}"),
        }
    } else {
        FilesError::Unreadable {
            path: f.location.clone(),
            message,
        }
    }
}

struct CountingRead {
    inner: Box<dyn Read + Send>,
    counter: Arc<AtomicU64>,
}

impl Read for CountingRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct ObjectRead {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
    handle: tokio::runtime::Handle,
    location: String,
}

impl Read for ObjectRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!("{}: {e}", self.location)));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
