//! Splitting CSV text into records and fields without copying.
//!
//! A record normally ends at a newline, so every line is its own record: an unbalanced
//! quote spoils only its own line, and large files split at any newline for parallel
//! decoding. With `multiLine`, quoted fields may span lines. Fields point into the input;
//! only quoted fields with escapes are unescaped into a side buffer.

use memchr::{memchr, memchr_iter};

/// How the text is delimited.
#[derive(Debug, Clone, Copy)]
pub struct CsvDialect {
    /// Field separator.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
    /// Escape character inside quotes, besides the doubled quote.
    pub escape: Option<u8>,
    /// Lines starting with this byte are skipped.
    pub comment: Option<u8>,
    /// Quoted fields may contain newlines.
    pub multi_line: bool,
}

/// Marks a span whose bytes are in the side buffer.
pub const SIDE: u32 = 1 << 31;
/// Marks a field that was quoted (so an empty one is an empty string, not null).
pub const QUOTED: u32 = 1 << 31;
/// A field that is absent (short row) or belongs to a malformed row.
pub const MISSING: FieldSpan = FieldSpan {
    start: u32::MAX,
    len: 0,
};

/// Where one field's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpan {
    /// Offset into the input, or into the side buffer when [`SIDE`] is set.
    pub start: u32,
    /// Length, with [`QUOTED`] set for quoted fields.
    pub len: u32,
}

impl FieldSpan {
    /// Whether the field is absent.
    #[inline]
    pub fn is_missing(self) -> bool {
        self.start == u32::MAX
    }

    /// Whether the field was quoted.
    #[inline]
    pub fn is_quoted(self) -> bool {
        self.len & QUOTED != 0
    }

    /// The field's bytes.
    #[inline]
    pub fn bytes<'a>(self, data: &'a [u8], side: &'a [u8]) -> &'a [u8] {
        let len = (self.len & !QUOTED) as usize;
        if self.start & SIDE != 0 {
            let s = (self.start & !SIDE) as usize;
            &side[s..s + len]
        } else {
            let s = self.start as usize;
            &data[s..s + len]
        }
    }
}

/// Why a record could not be split into the expected fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReason {
    /// The record has the wrong number of fields.
    ColumnCount {
        /// Fields expected (the header's).
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A quoted field is not closed before the end of the line (or of the input).
    UnbalancedQuote,
}

impl std::fmt::Display for BadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadReason::ColumnCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            BadReason::UnbalancedQuote => f.write_str("unbalanced quote"),
        }
    }
}

/// A malformed record, kept whole.
#[derive(Debug, Clone)]
pub struct BadRow {
    /// Its row index in the batch.
    pub row: u32,
    /// Offset of its raw text in the input.
    pub raw_start: u32,
    /// Length of its raw text.
    pub raw_len: u32,
    /// What is wrong with it.
    pub reason: BadReason,
}

/// The records of one chunk.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Fields per record.
    pub n_cols: usize,
    /// `rows * n_cols` spans, row-major.
    pub fields: Vec<FieldSpan>,
    /// Unescaped field bytes.
    pub side: Vec<u8>,
    /// For each record, its first line relative to the chunk's first line.
    pub lines: Vec<u32>,
    /// Malformed records (their spans are [`MISSING`]).
    pub bad: Vec<BadRow>,
    /// Bytes consumed (for `max_rows` stops).
    pub consumed: usize,
}

impl Tokens {
    /// Number of records.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// The span of a field.
    #[inline]
    pub fn field(&self, row: usize, col: usize) -> FieldSpan {
        self.fields[row * self.n_cols + col]
    }
}

/// Splits `data` into records of `n_cols` fields, stopping after `max_rows` records.
pub fn tokenize(data: &[u8], d: &CsvDialect, n_cols: usize, max_rows: usize) -> Tokens {
    let mut t = Tokens {
        n_cols,
        fields: Vec::with_capacity((data.len() / 8).min(max_rows.saturating_mul(n_cols))),
        ..Default::default()
    };
    let mut pos = 0usize;
    let mut line: u32 = 0;
    let mut scratch: Vec<FieldSpan> = Vec::with_capacity(n_cols + 4);
    while pos < data.len() && t.lines.len() < max_rows {
        let line_end = memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
        let mut end = line_end;
        if end > pos && data[end - 1] == b'\r' {
            end -= 1;
        }
        let text = &data[pos..end];
        if text.is_empty() || d.comment.is_some_and(|c| text[0] == c) {
            pos = line_end + 1;
            line += 1;
            continue;
        }
        let row = t.lines.len() as u32;
        t.lines.push(line);
        scratch.clear();
        if memchr(d.quote, text).is_none() {
            // Fast path: no quotes on this line.
            let mut start = pos;
            for i in memchr_iter(d.delimiter, text) {
                scratch.push(FieldSpan {
                    start: start as u32,
                    len: (pos + i - start) as u32,
                });
                start = pos + i + 1;
            }
            scratch.push(FieldSpan {
                start: start as u32,
                len: (end - start) as u32,
            });
            finish_row(&mut t, &scratch, row, pos, end, n_cols);
            pos = line_end + 1;
            line += 1;
        } else {
            match split_quoted(data, pos, line_end, d, &mut scratch, &mut t.side) {
                Ok((rec_end, next, extra_lines)) => {
                    finish_row(&mut t, &scratch, row, pos, rec_end, n_cols);
                    pos = next;
                    line += 1 + extra_lines;
                }
                Err(()) => {
                    // Keep the whole line: it is rescued, never dropped.
                    t.fields.extend(std::iter::repeat_n(MISSING, n_cols));
                    t.bad.push(BadRow {
                        row,
                        raw_start: pos as u32,
                        raw_len: (end - pos) as u32,
                        reason: BadReason::UnbalancedQuote,
                    });
                    pos = line_end + 1;
                    line += 1;
                }
            }
        }
    }
    t.consumed = pos.min(data.len());
    t
}

#[inline]
fn finish_row(
    t: &mut Tokens,
    fields: &[FieldSpan],
    row: u32,
    start: usize,
    end: usize,
    n_cols: usize,
) {
    if fields.len() == n_cols {
        t.fields.extend_from_slice(fields);
    } else {
        t.fields.extend(std::iter::repeat_n(MISSING, n_cols));
        t.bad.push(BadRow {
            row,
            raw_start: start as u32,
            raw_len: (end - start) as u32,
            reason: BadReason::ColumnCount {
                expected: n_cols,
                found: fields.len(),
            },
        });
    }
}

/// Splits one record that contains quotes. Returns (end of record text, start of the next
/// record, newlines consumed inside quotes), or `Err` for an unbalanced quote.
fn split_quoted(
    data: &[u8],
    start: usize,
    line_end: usize,
    d: &CsvDialect,
    out: &mut Vec<FieldSpan>,
    side: &mut Vec<u8>,
) -> Result<(usize, usize, u32), ()> {
    let limit = if d.multi_line { data.len() } else { line_end };
    let mut pos = start;
    let mut extra_lines = 0u32;
    loop {
        // At the start of a field.
        if pos < limit && data[pos] == d.quote {
            // Quoted field: find the closing quote.
            let content_start = pos + 1;
            let mut i = content_start;
            let mut needs_copy = false;
            let closed = loop {
                if i >= limit {
                    break false;
                }
                let c = data[i];
                if Some(c) == d.escape && c != d.quote && i + 1 < limit {
                    needs_copy = true;
                    i += 2;
                    continue;
                }
                if c == d.quote {
                    if i + 1 < limit && data[i + 1] == d.quote {
                        needs_copy = true;
                        i += 2;
                        continue;
                    }
                    break true;
                }
                if c == b'\n' {
                    extra_lines += 1;
                }
                i += 1;
            };
            if !closed {
                return Err(());
            }
            let content_end = i;
            pos = i + 1;
            // Text between the closing quote and the delimiter is kept, not lost.
            let tail_end = find_field_end(data, pos, limit, d.delimiter);
            let tail = &data[pos..tail_end];
            let tail = if tail_end == limit || data[tail_end] == b'\n' {
                tail.strip_suffix(b"\r").unwrap_or(tail)
            } else {
                tail
            };
            if needs_copy || !tail.is_empty() {
                let s = side.len();
                unescape(&data[content_start..content_end], d, side);
                side.extend_from_slice(tail);
                out.push(FieldSpan {
                    start: s as u32 | SIDE,
                    len: (side.len() - s) as u32 | QUOTED,
                });
            } else {
                out.push(FieldSpan {
                    start: content_start as u32,
                    len: (content_end - content_start) as u32 | QUOTED,
                });
            }
            pos = tail_end;
        } else {
            let end = find_field_end(data, pos, limit, d.delimiter);
            let mut fend = end;
            if (end == limit || data[end] == b'\n') && fend > pos && data[fend - 1] == b'\r' {
                fend -= 1;
            }
            out.push(FieldSpan {
                start: pos as u32,
                len: (fend - pos) as u32,
            });
            pos = end;
        }
        // After a field: a delimiter continues the record; a newline or the end ends it.
        if pos < limit && data[pos] == d.delimiter {
            pos += 1;
            continue;
        }
        let mut rec_end = pos;
        if rec_end > start && data[rec_end - 1] == b'\r' {
            rec_end -= 1;
        }
        let next = if pos < data.len() && data[pos] == b'\n' {
            pos + 1
        } else {
            pos
        };
        return Ok((rec_end, next, extra_lines));
    }
}

#[inline]
fn find_field_end(data: &[u8], from: usize, limit: usize, delimiter: u8) -> usize {
    let hay = &data[from..limit];
    match memchr::memchr2(delimiter, b'\n', hay) {
        Some(i) => from + i,
        None => limit,
    }
}

fn unescape(content: &[u8], d: &CsvDialect, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < content.len() {
        let c = content[i];
        if (c == d.quote || Some(c) == d.escape) && i + 1 < content.len() {
            out.push(content[i + 1]);
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
}

/// Where the last complete record in `data` ends (the byte after its newline), so a chunk
/// can be cut there. `None` when no record is complete.
pub fn last_record_end(data: &[u8], d: &CsvDialect) -> Option<usize> {
    if !d.multi_line {
        return memchr::memrchr(b'\n', data).map(|i| i + 1);
    }
    // Track quote state from the start (a chunk always starts at a record boundary).
    let mut in_quotes = false;
    let mut last = None;
    let mut i = 0;
    while i < data.len() {
        let Some(off) = memchr::memchr3(d.quote, b'\n', d.escape.unwrap_or(d.quote), &data[i..])
        else {
            break;
        };
        let p = i + off;
        let c = data[p];
        if in_quotes && Some(c) == d.escape && c != d.quote {
            i = p + 2;
            continue;
        }
        if c == d.quote {
            in_quotes = !in_quotes;
        } else if c == b'\n' && !in_quotes {
            last = Some(p + 1);
        }
        i = p + 1;
    }
    last
}

/// The first record of `data` (skipping blank and comment lines) as owned fields, with the
/// offset just past it and the number of lines it used. Used for headers and for counting
/// columns. `None` when there is no complete record.
pub fn first_record(data: &[u8], d: &CsvDialect) -> Option<(Vec<Vec<u8>>, usize, u32)> {
    let mut pos = 0usize;
    let mut line = 0u32;
    while pos < data.len() {
        let line_end = memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
        let mut end = line_end;
        if end > pos && data[end - 1] == b'\r' {
            end -= 1;
        }
        let text = &data[pos..end];
        if text.is_empty() || d.comment.is_some_and(|c| text[0] == c) {
            pos = line_end + 1;
            line += 1;
            continue;
        }
        let mut spans = Vec::new();
        let mut side = Vec::new();
        let (next, lines) = match split_quoted(data, pos, line_end, d, &mut spans, &mut side) {
            Ok((_, next, extra)) => (next, line + 1 + extra),
            Err(()) => {
                // An unbalanced quote in a header: split the line plainly instead.
                spans.clear();
                let mut start = pos;
                for i in memchr_iter(d.delimiter, text) {
                    spans.push(FieldSpan {
                        start: start as u32,
                        len: (pos + i - start) as u32,
                    });
                    start = pos + i + 1;
                }
                spans.push(FieldSpan {
                    start: start as u32,
                    len: (end - start) as u32,
                });
                (line_end + 1, line + 1)
            }
        };
        let fields = spans
            .iter()
            .map(|s| s.bytes(data, &side).to_vec())
            .collect();
        return Some((fields, next.min(data.len()), lines));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect(multi_line: bool) -> CsvDialect {
        CsvDialect {
            delimiter: b',',
            quote: b'"',
            escape: None,
            comment: None,
            multi_line,
        }
    }

    fn strs(t: &Tokens, data: &[u8], row: usize) -> Vec<String> {
        (0..t.n_cols)
            .map(|c| String::from_utf8_lossy(t.field(row, c).bytes(data, &t.side)).into_owned())
            .collect()
    }

    #[test]
    fn plain_quoted_and_escaped() {
        let data = b"1,a,b\r\n2,\"x,y\",\"he said \"\"hi\"\"\"\n\n3,,\"\"\n";
        let t = tokenize(data, &dialect(false), 3, usize::MAX);
        assert_eq!(t.rows(), 3);
        assert!(t.bad.is_empty(), "{:?}", t.bad);
        assert_eq!(strs(&t, data, 0), ["1", "a", "b"]);
        assert_eq!(strs(&t, data, 1), ["2", "x,y", "he said \"hi\""]);
        assert_eq!(strs(&t, data, 2), ["3", "", ""]);
        assert!(!t.field(2, 1).is_quoted());
        assert!(t.field(2, 2).is_quoted());
        assert_eq!(t.lines, [0, 1, 3]);
    }

    #[test]
    fn bad_rows_are_kept_whole() {
        let data = b"1,a,b\n2,\"open,c\n3,d\n4,e,f,g\n5,f,g";
        let t = tokenize(data, &dialect(false), 3, usize::MAX);
        assert_eq!(t.rows(), 5);
        assert_eq!(t.bad.len(), 3);
        assert_eq!(t.bad[0].reason, BadReason::UnbalancedQuote);
        assert_eq!(
            t.bad[1].reason,
            BadReason::ColumnCount {
                expected: 3,
                found: 2
            }
        );
        assert_eq!(
            t.bad[2].reason,
            BadReason::ColumnCount {
                expected: 3,
                found: 4
            }
        );
        let raw = &data[t.bad[0].raw_start as usize..][..t.bad[0].raw_len as usize];
        assert_eq!(raw, b"2,\"open,c");
        assert_eq!(strs(&t, data, 4), ["5", "f", "g"]);
    }

    #[test]
    fn multi_line_fields() {
        let data = b"1,\"line one\nline two\",x\n2,y,z\n";
        let t = tokenize(data, &dialect(true), 3, usize::MAX);
        assert_eq!(t.rows(), 2);
        assert_eq!(strs(&t, data, 0), ["1", "line one\nline two", "x"]);
        assert_eq!(t.lines, [0, 2]);
        assert_eq!(last_record_end(b"1,\"a\nb\n", &dialect(true)), None);
        assert_eq!(last_record_end(b"1,\"a\nb\"\n2", &dialect(true)), Some(8));
    }
}
