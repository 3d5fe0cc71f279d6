//! Decoder of the `pgoutput` logical replication messages (protocol version 1), as returned
//! by `pg_logical_slot_peek_binary_changes`. Column values are slices of the message buffer,
//! never copied or converted here: the caller decodes them straight into Arrow builders.

use bytes::{Buf, Bytes};

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Start of a transaction.
    Begin {
        /// LSN of the commit record: the transaction's position in the change stream.
        final_lsn: u64,
        /// Commit time, microseconds since the Unix epoch.
        commit_ts_micros: i64,
        /// The transaction id (32 bits, as the protocol sends it).
        xid: u32,
    },
    /// End of a transaction.
    Commit {
        /// LSN of the commit record.
        commit_lsn: u64,
        /// LSN just past the commit record; the slot is advanced to this.
        end_lsn: u64,
    },
    /// The shape of a table, sent before its first change in each decoding session and again
    /// after it changes.
    Relation(Relation),
    /// A row was inserted.
    Insert {
        /// Relation id.
        rel: u32,
        /// The new row.
        new: Tuple,
    },
    /// A row was updated.
    Update {
        /// Relation id.
        rel: u32,
        /// The old key (when the key changed) or the old row (replica identity full).
        old: Option<Tuple>,
        /// The new row; unchanged TOASTed values are [`Value::Unchanged`].
        new: Tuple,
    },
    /// A row was deleted.
    Delete {
        /// Relation id.
        rel: u32,
        /// The old key, or the whole old row with replica identity full.
        old: Tuple,
    },
    /// Tables were truncated.
    Truncate {
        /// Relation ids.
        rels: Vec<u32>,
    },
    /// Anything this reader does not act on (origin, type, logical messages).
    Other(u8),
}

pub use crate::changes::{Relation, RelationColumn, Tuple, Value};

/// A message that does not follow the protocol.
#[derive(Debug, thiserror::Error)]
#[error("malformed pgoutput message ({0})")]
pub struct MalformedMessage(pub String);

fn need(buf: &Bytes, n: usize, what: &str) -> Result<(), MalformedMessage> {
    if buf.remaining() < n {
        return Err(MalformedMessage(format!(
            "{what}: needs {n} bytes, {} left",
            buf.remaining()
        )));
    }
    Ok(())
}

fn string(buf: &mut Bytes) -> Result<String, MalformedMessage> {
    let end = memchr::memchr(0, &buf[..])
        .ok_or_else(|| MalformedMessage("string without terminator".into()))?;
    let s = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.advance(end + 1);
    Ok(s)
}

fn tuple(buf: &mut Bytes) -> Result<Tuple, MalformedMessage> {
    need(buf, 2, "tuple")?;
    let n = buf.get_i16() as usize;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        need(buf, 1, "column kind")?;
        let value = match buf.get_u8() {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            kind @ (b't' | b'b') => {
                need(buf, 4, "value length")?;
                let len = buf.get_i32() as usize;
                need(buf, len, "value")?;
                let data = buf.split_to(len);
                if kind == b't' {
                    Value::Text(data)
                } else {
                    Value::Binary(data)
                }
            }
            other => {
                return Err(MalformedMessage(format!(
                    "unknown column kind {:?}",
                    other as char
                )));
            }
        };
        values.push(value);
    }
    Ok(values)
}

/// Decodes one message.
pub fn decode(mut buf: Bytes) -> Result<Message, MalformedMessage> {
    need(&buf, 1, "message")?;
    let tag = buf.get_u8();
    let msg = match tag {
        b'B' => {
            need(&buf, 20, "begin")?;
            let final_lsn = buf.get_u64();
            let ts = buf.get_i64();
            let xid = buf.get_u32();
            Message::Begin {
                final_lsn,
                commit_ts_micros: ts + PG_EPOCH_OFFSET_MICROS,
                xid,
            }
        }
        b'C' => {
            need(&buf, 25, "commit")?;
            let _flags = buf.get_u8();
            let commit_lsn = buf.get_u64();
            let end_lsn = buf.get_u64();
            Message::Commit {
                commit_lsn,
                end_lsn,
            }
        }
        b'R' => {
            need(&buf, 4, "relation")?;
            let id = buf.get_u32();
            let schema = string(&mut buf)?;
            let name = string(&mut buf)?;
            need(&buf, 3, "relation")?;
            let replica_identity = buf.get_u8();
            let n = buf.get_i16() as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                need(&buf, 1, "relation column")?;
                let flags = buf.get_u8();
                let name = string(&mut buf)?;
                need(&buf, 8, "relation column")?;
                columns.push(RelationColumn {
                    key: flags & 1 == 1,
                    name,
                    type_oid: buf.get_u32(),
                    type_modifier: buf.get_i32(),
                });
            }
            Message::Relation(Relation {
                id,
                schema: if schema.is_empty() {
                    "pg_catalog".into()
                } else {
                    schema
                },
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            need(&buf, 5, "insert")?;
            let rel = buf.get_u32();
            let _n = buf.get_u8();
            Message::Insert {
                rel,
                new: tuple(&mut buf)?,
            }
        }
        b'U' => {
            need(&buf, 5, "update")?;
            let rel = buf.get_u32();
            let mut kind = buf.get_u8();
            let mut old = None;
            if kind == b'K' || kind == b'O' {
                old = Some(tuple(&mut buf)?);
                need(&buf, 1, "update")?;
                kind = buf.get_u8();
            }
            if kind != b'N' {
                return Err(MalformedMessage(format!(
                    "update without new tuple ({:?})",
                    kind as char
                )));
            }
            Message::Update {
                rel,
                old,
                new: tuple(&mut buf)?,
            }
        }
        b'D' => {
            need(&buf, 5, "delete")?;
            let rel = buf.get_u32();
            let _kind = buf.get_u8();
            Message::Delete {
                rel,
                old: tuple(&mut buf)?,
            }
        }
        b'T' => {
            need(&buf, 5, "truncate")?;
            let n = buf.get_u32() as usize;
            let _options = buf.get_u8();
            need(&buf, 4 * n, "truncate")?;
            Message::Truncate {
                rels: (0..n).map(|_| buf.get_u32()).collect(),
            }
        }
        other => Message::Other(other),
    };
    Ok(msg)
}

/// Formats an LSN the way PostgreSQL prints it (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses an LSN in PostgreSQL's text form.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn tuple_bytes(out: &mut Vec<u8>, values: &[Option<&[u8]>]) {
        out.put_i16(values.len() as i16);
        for v in values {
            match v {
                None => out.put_u8(b'n'),
                Some(b"~") => out.put_u8(b'u'),
                Some(d) => {
                    out.put_u8(b'b');
                    out.put_i32(d.len() as i32);
                    out.put_slice(d);
                }
            }
        }
    }

    #[test]
    fn decodes_every_message_kind() {
        let mut b = vec![b'B'];
        b.put_u64(0x16_B374_D848);
        b.put_i64(1_000_000);
        b.put_u32(730);
        assert_eq!(
            decode(Bytes::from(b)).unwrap(),
            Message::Begin {
                final_lsn: 0x16_B374_D848,
                commit_ts_micros: PG_EPOCH_OFFSET_MICROS + 1_000_000,
                xid: 730
            }
        );

        let mut r = vec![b'R'];
        r.put_u32(42);
        r.put_slice(b"public\0orders\0");
        r.put_u8(b'd');
        r.put_i16(2);
        r.put_u8(1);
        r.put_slice(b"id\0");
        r.put_u32(23);
        r.put_i32(-1);
        r.put_u8(0);
        r.put_slice(b"note\0");
        r.put_u32(25);
        r.put_i32(-1);
        let Message::Relation(rel) = decode(Bytes::from(r)).unwrap() else {
            panic!("relation")
        };
        assert_eq!(
            (rel.schema.as_str(), rel.name.as_str()),
            ("public", "orders")
        );
        assert!(rel.columns[0].key && !rel.columns[1].key);

        let mut u = vec![b'U'];
        u.put_u32(42);
        u.put_u8(b'K');
        tuple_bytes(&mut u, &[Some(&[0, 0, 0, 1]), None]);
        u.put_u8(b'N');
        tuple_bytes(&mut u, &[Some(&[0, 0, 0, 2]), Some(b"~")]);
        assert_eq!(
            decode(Bytes::from(u)).unwrap(),
            Message::Update {
                rel: 42,
                old: Some(vec![
                    Value::Binary(Bytes::from_static(&[0, 0, 0, 1])),
                    Value::Null
                ]),
                new: vec![
                    Value::Binary(Bytes::from_static(&[0, 0, 0, 2])),
                    Value::Unchanged
                ],
            }
        );

        let mut t = vec![b'T'];
        t.put_u32(2);
        t.put_u8(0);
        t.put_u32(42);
        t.put_u32(43);
        assert_eq!(
            decode(Bytes::from(t)).unwrap(),
            Message::Truncate { rels: vec![42, 43] }
        );
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        for bad in [
            &b"B\0\0"[..],
            b"I\0\0\0\x01N\0\x01b\0\0\0\x09ab",
            b"R\0\0\0\x01pub",
        ] {
            assert!(decode(Bytes::copy_from_slice(bad)).is_err());
        }
    }

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("nope"), None);
    }
}
