//! Finding the files a path or glob names.
//!
//! Local paths are walked with the file system so that errors name the exact folder that
//! could not be read; object-store URLs (`s3://...`) are listed through `object_store`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use super::error::{FilesError, Result};
use super::options::ReadOptions;

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// How users see it: an absolute local path or a URL.
    pub location: String,
    /// Where to read it.
    pub kind: FileLocation,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, milliseconds since the epoch.
    pub modified_ms: i64,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLocation {
    /// A local file.
    Local(PathBuf),
    /// An object in the store the listing was made from.
    Object(ObjectPath),
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn glob(pattern: &str) -> Result<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| FilesError::BadOption {
            option: "path".into(),
            message: format!("invalid glob `{pattern}`: {e}"),
        })
}

/// Hidden and bookkeeping files Spark also skips (`_SUCCESS`, `.crc`, `_delta_log/`).
fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Lists local files for a path, folder or glob, sorted by path.
pub fn list_local(path: &str, options: &ReadOptions) -> Result<Vec<SourceFile>> {
    let name_filter = options.path_glob_filter.as_deref().map(glob).transpose()?;
    let abs = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    };
    let mut out = Vec::new();
    if has_glob(path) {
        let full = abs(Path::new(path));
        let full_str = full.to_string_lossy().to_string();
        // Walk from the deepest folder before the first wildcard.
        let cut = full_str
            .find(['*', '?', '[', '{'])
            .unwrap_or(full_str.len());
        let base = match full_str[..cut].rfind('/') {
            Some(i) => PathBuf::from(&full_str[..i.max(1)]),
            None => PathBuf::from("/"),
        };
        if !base.exists() {
            return Err(FilesError::NotFound {
                path: base.display().to_string(),
            });
        }
        let matcher = glob(&full_str)?;
        walk(&base, true, &mut |p, meta| {
            if matcher.is_match(p) && name_ok(p, &name_filter) {
                out.push(local_file(p, meta));
            }
        })?;
        if out.is_empty() {
            return Err(FilesError::NoFiles {
                path: path.to_string(),
                hint: format!(" (no file under {} matches the pattern)", base.display()),
            });
        }
    } else {
        let p = abs(Path::new(path));
        let meta = std::fs::metadata(&p).map_err(|e| io_error(&p, e))?;
        if meta.is_file() {
            out.push(local_file(&p, &meta));
        } else {
            walk(&p, options.recursive, &mut |f, meta| {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                if !is_hidden(&name) && name_ok(f, &name_filter) {
                    out.push(local_file(f, meta));
                }
            })?;
            if out.is_empty() {
                return Err(FilesError::NoFiles {
                    path: p.display().to_string(),
                    hint: " (the folder holds no data files)".into(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

fn name_ok(p: &Path, filter: &Option<GlobMatcher>) -> bool {
    match filter {
        None => true,
        Some(m) => p.file_name().is_some_and(|n| m.is_match(n)),
    }
}

fn io_error(p: &Path, e: std::io::Error) -> FilesError {
    match e.kind() {
        std::io::ErrorKind::NotFound => FilesError::NotFound {
            path: p.display().to_string(),
        },
        std::io::ErrorKind::PermissionDenied => FilesError::Unreadable {
            path: p.display().to_string(),
            message: "permission denied".into(),
        },
        _ => FilesError::Unreadable {
            path: p.display().to_string(),
            message: e.to_string(),
        },
    }
}

fn walk(
    dir: &Path,
    recursive: bool,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata),
) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    let mut entries: Vec<_> = entries
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| io_error(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
        if meta.is_dir() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if recursive && !is_hidden(&name) {
                walk(&path, recursive, visit)?;
            }
        } else if meta.is_file() {
            visit(&path, &meta);
        }
    }
    Ok(())
}

fn local_file(p: &Path, meta: &std::fs::Metadata) -> SourceFile {
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    SourceFile {
        location: p.display().to_string(),
        kind: FileLocation::Local(p.to_path_buf()),
        size: meta.len(),
        modified_ms,
    }
}

/// Lists objects for a URL prefix or glob in an object store, sorted by path.
pub async fn list_objects(
    store: Arc<dyn ObjectStore>,
    url: &url::Url,
    options: &ReadOptions,
) -> Result<Vec<SourceFile>> {
    let name_filter = options.path_glob_filter.as_deref().map(glob).transpose()?;
    let full = url.path().trim_start_matches('/').to_string();
    let decoded = percent_decode(&full);
    let (prefix, matcher) = if has_glob(&decoded) {
        let cut = decoded.find(['*', '?', '[', '{']).unwrap_or(decoded.len());
        let base = decoded[..cut]
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or("");
        (base.to_string(), Some(glob(&decoded)?))
    } else {
        (decoded.trim_end_matches('/').to_string(), None)
    };
    let prefix_path = ObjectPath::from(prefix.as_str());
    let metas: Vec<_> = store
        .list(Some(&prefix_path))
        .try_collect()
        .await
        .map_err(|e| FilesError::Unreadable {
            path: url.to_string(),
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    let base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    for m in metas {
        let p = m.location.to_string();
        let name = m.location.filename().unwrap_or("");
        let keep = match &matcher {
            Some(g) => g.is_match(&p),
            None => !p[prefix.len().min(p.len())..].split('/').any(is_hidden),
        };
        if keep && name_ok(Path::new(name), &name_filter) {
            out.push(SourceFile {
                location: format!("{base}/{p}"),
                kind: FileLocation::Object(m.location.clone()),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            });
        }
    }
    if out.is_empty() {
        return Err(FilesError::NoFiles {
            path: url.to_string(),
            hint: String::new(),
        });
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_folders_globs_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a.csv"), "x\n1\n").unwrap();
        std::fs::write(d.join("b.json"), "{}\n").unwrap();
        std::fs::write(d.join("sub/c.csv"), "x\n2\n").unwrap();
        std::fs::write(d.join("_SUCCESS"), "").unwrap();
        let o = ReadOptions::default();
        let all = list_local(d.to_str().unwrap(), &o).unwrap();
        assert_eq!(all.len(), 3);
        let csv = list_local(&format!("{}/*.csv", d.display()), &o).unwrap();
        assert_eq!(csv.len(), 1);
        let deep = list_local(&format!("{}/**/*.csv", d.display()), &o).unwrap();
        assert_eq!(deep.len(), 2);
        let e = list_local(&format!("{}/nope", d.display()), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("no such file"), "{e}");
        let e = list_local(&format!("{}/*.parquet", d.display()), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no files found"), "{e}");
    }
}
