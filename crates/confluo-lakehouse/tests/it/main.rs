//! Integration tests of the lakehouse crate: the metastore on SQLite and PostgreSQL, and
//! Delta operations on local storage.

mod changes_apply;
mod delta_ops;
mod metastore;
