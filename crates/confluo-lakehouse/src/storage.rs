//! Storage roots through `object_store`: the same code serves local disk and S3-compatible
//! storage.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use url::Url;

use crate::error::{LakehouseError, Result};
use confluo_core::TableName;

/// Where the lakehouse keeps its tables, and how to reach it.
#[derive(Debug, Clone)]
pub struct StorageRoot {
    url: Url,
    options: BTreeMap<String, String>,
}

impl StorageRoot {
    /// Opens a storage root: a local path (created if missing) or an object-store URL.
    pub fn new(root: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let mut expanded = BTreeMap::new();
        for (k, v) in options {
            expanded.insert(k.clone(), confluo_core::project::expand_env(v)?);
        }
        let url = location_url(root)?;
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|_| {
                LakehouseError::Invalid(format!("storage root {root} is not a valid local path"))
            })?;
            std::fs::create_dir_all(&path).map_err(|e| LakehouseError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        }
        Ok(StorageRoot {
            url,
            options: expanded,
        })
    }

    /// The root URL, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Object-store options (credentials, endpoint) with `${env:..}` expanded.
    pub fn options(&self) -> HashMap<String, String> {
        self.options.clone().into_iter().collect()
    }

    /// The default location of a managed table: `<root>/<catalog>/<schema>/<table>/`.
    pub fn table_url(&self, name: &TableName) -> Url {
        let mut url = self.url.clone();
        {
            let mut segs = url.path_segments_mut().expect("storage URLs have paths");
            segs.pop_if_empty();
            segs.push(name.catalog.as_str());
            segs.push(name.schema.as_str());
            segs.push(name.table.as_str());
            segs.push("");
        }
        url
    }

    /// An object store whose root is the bucket (or file-system root) holding `url`.
    pub fn store_for(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match url.scheme() {
            "file" => Ok(Arc::new(LocalFileSystem::new())),
            "s3" | "s3a" => {
                let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
                for (k, v) in &self.options {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        builder = builder.with_config(key, v);
                    }
                }
                let store = builder.build().map_err(LakehouseError::storage(url))?;
                Ok(Arc::new(store))
            }
            "memory" => Ok(Arc::new(object_store::memory::InMemory::new())),
            other => Err(LakehouseError::Invalid(format!(
                "unsupported storage scheme `{other}` in {url} (use a local path or s3://)"
            ))),
        }
    }
}

/// Turns a user's location (local path, relative path or URL) into a directory URL.
pub fn location_url(location: &str) -> Result<Url> {
    let mut url = if location.contains("://") {
        Url::parse(location)
            .map_err(|e| LakehouseError::Invalid(format!("invalid location {location}: {e}")))?
    } else {
        let path = Path::new(location);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| LakehouseError::Io {
                    path: location.into(),
                    source: e,
                })?
                .join(path)
        };
        Url::from_directory_path(&abs)
            .map_err(|_| LakehouseError::Invalid(format!("invalid local path {location}")))?
    };
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_urls_escape_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = StorageRoot::new(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
        let url = root.table_url(&TableName::new("main", "My Schema", "t"));
        assert!(url.as_str().ends_with("/main/My%20Schema/t/"), "{url}");
        let path = url.to_file_path().unwrap();
        assert!(path.ends_with("main/My Schema/t"));
    }
}
