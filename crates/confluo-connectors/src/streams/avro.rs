//! Avro payloads as Arrow columns, decoded by arrow-avro.
//!
//! Two framings: every payload a bare datum of one schema the entry gives (what Spark's
//! `from_avro(value, avroSchema)` reads), or Confluent's wire format — byte 0, the writer
//! schema's 4-byte big-endian id, the datum — with the schemas fetched by id from a schema
//! registry (Confluent Schema Registry, Karapace, Redpanda, Apicurio's compatible API) and
//! kept for the run. A payload that cannot be read (wrong framing, an id the registry does
//! not have, a datum that does not match its schema, bytes after it) is kept in
//! `_rescued_data` with where it came from; the others in the batch land as rows.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder, new_null_array};
use arrow::compute::{CastOptions, cast_with_options, interleave};
use arrow::datatypes::{DataType, Field};
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use confluo_core::source::SourceError;
use serde_json::{Map, Value};
use std::sync::Arc;

use super::payload::{Decoded, RESCUED};
use crate::files::rescue::{self, ERROR_KEY, RAW_KEY};

/// Where the writer schemas of Avro payloads come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvroSchemas {
    /// One schema (its JSON text) for every payload; each payload is a bare datum.
    Given(String),
    /// Confluent's wire format; schemas are fetched by id from the registry at this URL
    /// (`user:password@` in it is sent as basic authentication).
    Registry(String),
}

/// The id the given schema is filed under (it never appears on the wire).
const GIVEN_ID: u32 = 0;
/// The first byte of a payload in Confluent's wire format.
const CONFLUENT_MAGIC: u8 = 0;
/// What arrow-avro's decoder reads before each datum: the magic byte and the schema id.
type Header = [u8; 5];

impl AvroSchemas {
    /// Checks the setting before anything is read: a given schema must decode to columns,
    /// a registry must be a URL.
    pub fn check(&self) -> Result<(), String> {
        match self {
            AvroSchemas::Given(text) => {
                let store = store_of(GIVEN_ID, text)?;
                decoder_for(&store, GIVEN_ID, 1)
                    .map(|_| ())
                    .map_err(|e| format!("`avro_schema` cannot be used: {e}"))
            }
            AvroSchemas::Registry(url) => registry_url(url).map(|_| ()),
        }
    }
}

/// The columns a datum of the given schema (its JSON text) decodes to: what Spark's
/// `from_avro(value, schema)` returns, as a struct of these fields.
pub fn given_fields(text: &str) -> Result<Vec<Field>, String> {
    let store = store_of(GIVEN_ID, text)?;
    let dec = decoder_for(&store, GIVEN_ID, 1)
        .map_err(|e| format!("the Avro schema cannot be used: {e}"))?;
    Ok(dec
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect())
}

/// Decodes Avro payloads; remembers the writer schemas it has fetched.
#[derive(Debug, Clone)]
pub struct AvroDecoder {
    schemas: AvroSchemas,
    /// Writer schemas by id (a given schema is filed under [`GIVEN_ID`]).
    stores: HashMap<u32, SchemaStore>,
    /// Ids the registry could not give, and why: their payloads are rescued.
    missing: HashMap<u32, String>,
    http: Option<reqwest::Client>,
}

impl AvroDecoder {
    /// A decoder for `schemas` (checked already by [`AvroSchemas::check`]).
    pub fn new(schemas: AvroSchemas) -> Self {
        let mut stores = HashMap::new();
        let mut missing = HashMap::new();
        if let AvroSchemas::Given(text) = &schemas {
            match store_of(GIVEN_ID, text) {
                Ok(s) => {
                    stores.insert(GIVEN_ID, s);
                }
                Err(e) => {
                    missing.insert(GIVEN_ID, e);
                }
            }
        }
        AvroDecoder {
            schemas,
            stores,
            missing,
            http: None,
        }
    }

    /// Fetches the writer schemas of `payloads` the decoder does not have yet. A registry
    /// that cannot be reached, or answers with a server error, is a transient error (the
    /// runner tries again); a refused login is definite; an id it does not know is the
    /// payload's fault, and rescues it.
    pub async fn prepare(&mut self, payloads: &[&[u8]]) -> Result<(), SourceError> {
        let AvroSchemas::Registry(url) = &self.schemas else {
            return Ok(());
        };
        let mut wanted: Vec<u32> = payloads
            .iter()
            .filter_map(|p| confluent_id(p))
            .filter(|id| !self.stores.contains_key(id) && !self.missing.contains_key(id))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let (base, auth) = registry_url(url).map_err(SourceError::definite)?;
        let http = match &self.http {
            Some(h) => h.clone(),
            None => {
                let h = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(30))
                    .build()
                    .map_err(|e| SourceError::definite(format!("schema registry client: {e}")))?;
                self.http = Some(h.clone());
                h
            }
        };
        for id in wanted {
            let got = fetch(&http, &base, auth.as_ref(), id).await?;
            match got.and_then(|text| {
                let store = store_of(id, &text)?;
                decoder_for(&store, id, 1).map_err(|e| {
                    format!("schema id {id} from the registry cannot be decoded to columns: {e}")
                })?;
                Ok(store)
            }) {
                Ok(store) => {
                    self.stores.insert(id, store);
                }
                Err(why) => {
                    self.missing.insert(id, why);
                }
            }
        }
        Ok(())
    }

    /// Decodes `payloads` (after [`AvroDecoder::prepare`]) to columns: `known` (the table's
    /// columns, in their types) first, then fields the table does not have yet, then
    /// `_rescued_data`. `locate(i, map)` adds where payload `i` came from to its rescued data.
    pub fn decode(
        &self,
        payloads: &[&[u8]],
        known: &[Field],
        locate: &dyn Fn(usize, &mut Map<String, Value>),
    ) -> Result<Decoded, String> {
        let n = payloads.len();
        let mut errors: Vec<Option<String>> = vec![None; n];
        let mut by_id: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, p) in payloads.iter().enumerate() {
            match self.frame(p) {
                Ok(id) => by_id.entry(id).or_default().push(i),
                Err(e) => errors[i] = Some(e),
            }
        }
        // Per payload, its row: (decoded batch, row in it).
        let mut rows: Vec<Option<(usize, usize)>> = vec![None; n];
        let mut batches: Vec<RecordBatch> = Vec::new();
        for (id, members) in &by_id {
            let store = &self.stores[id];
            let mut header: Header = [CONFLUENT_MAGIC, 0, 0, 0, 0];
            header[1..].copy_from_slice(&id.to_be_bytes());
            let size = members.len() + 1;
            let mut dec = decoder_for(store, *id, size)?;
            let mut segment: Vec<usize> = Vec::new();
            for &i in members {
                let body = self.body(payloads[i]);
                match feed(&mut dec, &header, body) {
                    Ok(()) => segment.push(i),
                    Err(e) => {
                        errors[i] = Some(match &self.schemas {
                            AvroSchemas::Given(_) => {
                                format!("not a datum of the given Avro schema: {e}")
                            }
                            AvroSchemas::Registry(_) => {
                                format!("not a datum of schema id {id}: {e}")
                            }
                        });
                        // The decoder may hold part of the bad payload: the good ones
                        // before it go again through a fresh one, and are set aside.
                        dec = decoder_for(store, *id, size)?;
                        for &j in &segment {
                            feed(&mut dec, &header, self.body(payloads[j]))?;
                        }
                        flush_into(&mut dec, &mut segment, &mut batches, &mut rows)?;
                    }
                }
            }
            flush_into(&mut dec, &mut segment, &mut batches, &mut rows)?;
        }
        assemble(payloads, known, &batches, &rows, &errors, locate)
    }

    /// The schema id payload `p` is written with, or why it cannot be read.
    fn frame(&self, p: &[u8]) -> Result<u32, String> {
        let id = match &self.schemas {
            AvroSchemas::Given(_) => GIVEN_ID,
            AvroSchemas::Registry(_) => confluent_id(p).ok_or_else(|| {
                "not in Confluent's wire format (byte 0, then a 4-byte schema id)".to_string()
            })?,
        };
        if let Some(why) = self.missing.get(&id) {
            return Err(why.clone());
        }
        if !self.stores.contains_key(&id) {
            return Err(format!("schema id {id} was not fetched"));
        }
        Ok(id)
    }

    /// The datum of payload `p` (after the wire format's header).
    fn body<'p>(&self, p: &'p [u8]) -> &'p [u8] {
        match self.schemas {
            AvroSchemas::Given(_) => p,
            AvroSchemas::Registry(_) => &p[5..],
        }
    }
}

/// The schema id of a payload in Confluent's wire format.
fn confluent_id(p: &[u8]) -> Option<u32> {
    (p.len() >= 5 && p[0] == CONFLUENT_MAGIC).then(|| u32::from_be_bytes([p[1], p[2], p[3], p[4]]))
}

fn store_of(id: u32, text: &str) -> Result<SchemaStore, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(Fingerprint::Id(id), AvroSchema::new(text.to_string()))
        .map_err(|e| format!("schema id {id}: {e}"))?;
    Ok(store)
}

fn decoder_for(store: &SchemaStore, id: u32, batch: usize) -> Result<Decoder, String> {
    ReaderBuilder::new()
        .with_batch_size(batch.max(1))
        .with_writer_schema_store(store.clone())
        .with_active_fingerprint(Fingerprint::Id(id))
        .build_decoder()
        .map_err(|e| e.to_string())
}

/// Decodes one payload's datum into `dec`, or says why it is not one whole datum.
fn feed(dec: &mut Decoder, header: &Header, body: &[u8]) -> Result<(), String> {
    let before = dec.capacity();
    match dec.decode(header) {
        Ok(n) if n == header.len() => {}
        Ok(_) => return Err("the decoder did not take the schema id".into()),
        Err(e) => return Err(e.to_string()),
    }
    let used = dec.decode(body).map_err(|e| e.to_string())?;
    if dec.capacity() + 1 != before {
        return Err(format!("the datum is cut short ({} bytes)", body.len()));
    }
    if used != body.len() {
        return Err(format!("{} bytes after the datum", body.len() - used));
    }
    // Bytes after the datum that look like a next payload's header are taken as one,
    // leaving the decoder waiting for a datum. Only a decoder waiting for a header refuses
    // a byte no header starts with, and takes nothing when it does.
    match dec.decode(&[0xFF]) {
        Err(e) if e.to_string().contains("magic") => Ok(()),
        _ => Err("bytes after the datum".into()),
    }
}

/// Moves the rows decoded so far into `batches`, noting each payload's row.
fn flush_into(
    dec: &mut Decoder,
    segment: &mut Vec<usize>,
    batches: &mut Vec<RecordBatch>,
    rows: &mut [Option<(usize, usize)>],
) -> Result<(), String> {
    if segment.is_empty() {
        return Ok(());
    }
    let batch = dec
        .flush()
        .map_err(|e| e.to_string())?
        .ok_or("the Avro decoder lost its rows")?;
    if batch.num_rows() != segment.len() {
        return Err(format!(
            "the Avro decoder gave {} rows for {} payloads",
            batch.num_rows(),
            segment.len()
        ));
    }
    for (r, &i) in segment.iter().enumerate() {
        rows[i] = Some((batches.len(), r));
    }
    batches.push(batch);
    segment.clear();
    Ok(())
}

/// The batch's columns in payload order: `known` columns in their types, new fields in
/// the order first seen (nullable: another schema or a rescued payload may lack them),
/// then `_rescued_data`.
fn assemble(
    payloads: &[&[u8]],
    known: &[Field],
    batches: &[RecordBatch],
    rows: &[Option<(usize, usize)>],
    errors: &[Option<String>],
    locate: &dyn Fn(usize, &mut Map<String, Value>),
) -> Result<Decoded, String> {
    let mut fields: Vec<Field> = known.to_vec();
    for b in batches {
        for f in b.schema().fields() {
            if !fields
                .iter()
                .any(|k| k.name().eq_ignore_ascii_case(f.name()))
            {
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
    }
    // Rescued payloads take their row from a one-row null array at the end.
    let nulls_at = batches.len();
    let picks: Vec<(usize, usize)> = rows.iter().map(|r| r.unwrap_or((nulls_at, 0))).collect();
    let strict = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let mut columns = Vec::with_capacity(fields.len() + 1);
    for field in &fields {
        let mut parts: Vec<ArrayRef> = Vec::with_capacity(batches.len() + 1);
        for b in batches {
            let schema = b.schema();
            let at = schema
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(field.name()));
            parts.push(match at {
                Some(c) if b.column(c).data_type() == field.data_type() => b.column(c).clone(),
                Some(c) => {
                    cast_with_options(b.column(c), field.data_type(), &strict).map_err(|e| {
                        format!(
                            "column `{}`: the payloads' {} does not fit the table's {}: {e}",
                            field.name(),
                            b.column(c).data_type(),
                            field.data_type()
                        )
                    })?
                }
                None => new_null_array(field.data_type(), b.num_rows()),
            });
        }
        parts.push(new_null_array(field.data_type(), 1));
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        let column = interleave(&refs, &picks).map_err(|e| e.to_string())?;
        columns.push((field.clone().with_nullable(true), column));
    }
    let mut resc = StringBuilder::new();
    let mut rescued = 0;
    for (i, e) in errors.iter().enumerate() {
        match e {
            None => resc.append_null(),
            Some(why) => {
                let mut m = Map::new();
                m.insert(RAW_KEY.into(), Value::String(rescue::text(payloads[i])));
                m.insert(ERROR_KEY.into(), Value::String(why.clone()));
                locate(i, &mut m);
                resc.append_value(Value::Object(m).to_string());
                rescued += 1;
            }
        }
    }
    columns.push((
        Field::new(RESCUED, DataType::Utf8, true),
        Arc::new(resc.finish()) as ArrayRef,
    ));
    Ok(Decoded { columns, rescued })
}

/// The registry's URL without credentials, and the credentials.
fn registry_url(text: &str) -> Result<(String, Option<(String, String)>), String> {
    let mut url = url::Url::parse(text)
        .map_err(|e| format!("`schema_registry` is not a URL ({e}): give http(s)://host:port"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`schema_registry` must be an http:// or https:// URL, not {}://",
            url.scheme()
        ));
    }
    let auth = (!url.username().is_empty()).then(|| {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        (
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        )
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url.as_str().trim_end_matches('/').to_string(), auth))
}

/// Asks the registry for schema `id`: its text, or why the payloads using it are rescued.
async fn fetch(
    http: &reqwest::Client,
    base: &str,
    auth: Option<&(String, String)>,
    id: u32,
) -> Result<Result<String, String>, SourceError> {
    let target = format!("{base}/schemas/ids/{id}");
    let mut req = http.get(&target).header(
        "Accept",
        "application/vnd.schemaregistry.v1+json, application/json",
    );
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let resp = req.send().await.map_err(|e| {
        SourceError::transient(format!("schema registry {base}: cannot reach it: {e}"))
    })?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| {
        SourceError::transient(format!("schema registry {target}: reading the answer: {e}"))
    })?;
    if status.as_u16() == 401 || status.as_u16() == 403 {
        return Err(SourceError::definite(format!(
            "schema registry {base}: access denied (HTTP {status}); check the user and \
             password in `schema_registry`"
        )));
    }
    if status.as_u16() == 404 {
        return Ok(Err(format!("schema id {id} is not in the registry")));
    }
    if !status.is_success() {
        return Err(SourceError::transient(format!(
            "schema registry {target}: HTTP {status}: {}",
            body.chars().take(300).collect::<String>()
        )));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| {
        SourceError::definite(format!(
            "schema registry {target}: the answer is not JSON ({e}); is this a schema registry?"
        ))
    })?;
    if let Some(kind) = v.get("schemaType").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("AVRO")
    {
        return Ok(Err(format!("schema id {id} is a {kind} schema, not Avro")));
    }
    match v.get("schema").and_then(Value::as_str) {
        Some(text) => Ok(Ok(text.to_string())),
        None => Err(SourceError::definite(format!(
            "schema registry {target}: the answer has no `schema`; is this a schema registry?"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    const SCHEMA: &str = r#"{"type":"record","name":"order","fields":[
        {"name":"id","type":"long"},{"name":"item","type":"string"}]}"#;

    /// Avro's zig-zag varint of `v`.
    fn long(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8 & 0x7F) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    fn datum(id: i64, item: &str) -> Vec<u8> {
        let mut out = Vec::new();
        long(id, &mut out);
        long(item.len() as i64, &mut out);
        out.extend_from_slice(item.as_bytes());
        out
    }

    fn at(i: usize, m: &mut Map<String, Value>) {
        m.insert("_offset".into(), Value::from(i));
    }

    #[test]
    fn given_schema_datums_become_rows_and_bad_ones_are_rescued_in_place() {
        let schemas = AvroSchemas::Given(SCHEMA.into());
        schemas.check().unwrap();
        let d = AvroDecoder::new(schemas);
        let good1 = datum(1, "tea");
        let short = datum(2, "coffee")[..4].to_vec();
        let mut trailing = datum(3, "milk");
        trailing.extend_from_slice(&[0, 0, 0, 0, 0]);
        let good2 = datum(4, "sugar");
        let payloads: Vec<&[u8]> = vec![&good1, &short, &trailing, &good2];
        let out = d.decode(&payloads, &[], &at).unwrap();
        let names: Vec<&str> = out.columns.iter().map(|(f, _)| f.name().as_str()).collect();
        assert_eq!(names, ["id", "item", RESCUED]);
        let ids = out.columns[0].1.as_primitive::<Int64Type>();
        assert_eq!(ids.value(0), 1);
        assert!(ids.is_null(1) && ids.is_null(2));
        assert_eq!(ids.value(3), 4);
        assert_eq!(out.columns[1].1.as_string::<i32>().value(3), "sugar");
        assert_eq!(out.rescued, 2);
        let resc = out.columns[2].1.as_string::<i32>();
        let bad: Value = serde_json::from_str(resc.value(2)).unwrap();
        assert_eq!(bad["_offset"], 2);
        assert!(
            bad["_error"].as_str().unwrap().contains("after the datum"),
            "{bad}"
        );
    }

    #[test]
    fn confluent_framing_is_checked_and_known_columns_keep_their_types() {
        let mut d = AvroDecoder::new(AvroSchemas::Registry("http://127.0.0.1:1".into()));
        d.stores.insert(7, store_of(7, SCHEMA).unwrap());
        d.missing
            .insert(9, "schema id 9 is not in the registry".into());
        let mut ok = vec![0, 0, 0, 0, 7];
        ok.extend(datum(5, "jam"));
        let mut unknown = vec![0, 0, 0, 0, 9];
        unknown.extend(datum(6, "x"));
        let plain = b"{\"id\": 1}".to_vec();
        let payloads: Vec<&[u8]> = vec![&ok, &unknown, &plain];
        let known = [Field::new("id", DataType::Utf8, true)];
        let out = d.decode(&payloads, &known, &at).unwrap();
        assert_eq!(out.columns[0].0.data_type(), &DataType::Utf8);
        assert_eq!(out.columns[0].1.as_string::<i32>().value(0), "5");
        assert_eq!(out.rescued, 2);
        let resc = out.columns[2].1.as_string::<i32>();
        assert!(resc.value(1).contains("not in the registry"));
        assert!(resc.value(2).contains("wire format"));
        assert!(
            AvroSchemas::Given("{\"type\": \"nope\"}".into())
                .check()
                .is_err()
        );
        assert!(AvroSchemas::Registry("ftp://x".into()).check().is_err());
    }
}
