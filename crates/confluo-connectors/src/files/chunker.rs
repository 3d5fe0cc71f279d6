//! Cutting a stream of text into chunks of whole records, so chunks can be decoded in
//! parallel and memory stays bounded whatever the file size.

use std::io::Read;

use super::csv::tokenize::{CsvDialect, last_record_end};

/// Default chunk size: large enough to amortise per-batch work, small enough to spread a
/// single big file over every core.
pub const CHUNK_SIZE: usize = 8 << 20;

/// Reads a stream and yields chunks that end on record boundaries.
pub struct Chunker {
    reader: Box<dyn Read + Send>,
    buf: Vec<u8>,
    chunk_size: usize,
    dialect: CsvDialect,
    eof: bool,
    line: u64,
}

impl Chunker {
    /// A chunker over `reader`, with `initial` bytes already read from it, whose first byte
    /// is on line `first_line`.
    pub fn new(
        reader: Box<dyn Read + Send>,
        initial: Vec<u8>,
        first_line: u64,
        chunk_size: usize,
        dialect: CsvDialect,
    ) -> Self {
        Chunker {
            reader,
            buf: initial,
            chunk_size,
            dialect,
            eof: false,
            line: first_line,
        }
    }

    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        while !self.eof && self.buf.len() < want {
            let need = want - self.buf.len();
            let n = (&mut self.reader)
                .take(need as u64)
                .read_to_end(&mut self.buf)?;
            if n == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    /// The next chunk and the line its first byte is on, or `None` at the end.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        let mut want = self.chunk_size;
        loop {
            self.fill(want)?;
            if self.buf.is_empty() {
                return Ok(None);
            }
            let cut = if self.eof {
                Some(self.buf.len())
            } else {
                last_record_end(&self.buf, &self.dialect)
            };
            match cut {
                Some(cut) if cut > 0 => {
                    let mut next = Vec::with_capacity(self.chunk_size + (64 << 10));
                    next.extend_from_slice(&self.buf[cut..]);
                    self.buf.truncate(cut);
                    let chunk = std::mem::replace(&mut self.buf, next);
                    let first = self.line;
                    self.line += bytecount::count(&chunk, b'\n') as u64;
                    return Ok(Some((chunk, first)));
                }
                // A record longer than the chunk: read on until it ends.
                _ => want = self.buf.len() * 2,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_end_on_records_and_count_lines() {
        let text = b"a,b\n1,2\n3,\"x\ny\"\n5,6\n".to_vec();
        let d = CsvDialect {
            delimiter: b',',
            quote: b'"',
            escape: None,
            comment: None,
            multi_line: true,
        };
        let mut c = Chunker::new(
            Box::new(std::io::Cursor::new(text.clone())),
            Vec::new(),
            1,
            10,
            d,
        );
        let mut all = Vec::new();
        let mut firsts = Vec::new();
        while let Some((chunk, first)) = c.next_chunk().unwrap() {
            assert!(chunk.ends_with(b"\n"));
            firsts.push(first);
            all.extend(chunk);
        }
        assert_eq!(all, text);
        assert_eq!(firsts[0], 1);
        assert!(firsts.len() >= 2);
    }
}
