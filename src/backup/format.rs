//! The backup file, format 1: UTF-8 text, one JSON object per line.
//!
//! 1. The header: `{"format":"consent-broker-backup","version":1,"store":"embedded","created_at":"<RFC 3339>","broker_version":"0.1.0"}`.
//! 2. One line per record, `{"record":{"key":"conn:{conn_…}","version":3,"expires_at_ms":0,"value":"<base64>"}}`:
//!    the record's key (without a Redis key prefix), version, absolute expiry in Unix epoch
//!    milliseconds (0 for never) and its bytes exactly as the store held them, in standard base64
//!    (sealed by the encryption layer, so no token or secret is in the file in clear).
//! 3. One line per index member, `{"member":{"index":"connlist:files","member":"…"}}`.
//! 4. The trailer, `{"end":{"records":N,"index_members":M,"sha256":"<hex>"}}`: the counts, and
//!    the SHA-256 of every byte before this line. A file without it was cut short.
//!
//! Reading checks all of it (header, every line, no line after the trailer, counts, digest, no
//! record key twice) before returning anything, so a damaged, truncated or foreign file is
//! refused as a whole.

use std::collections::HashSet;
use std::io::{BufRead, Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Entry, RawRecord};

/// What the header's `format` says.
pub const MAGIC: &str = "consent-broker-backup";
/// The file format this build writes and reads.
pub const VERSION: u32 = 1;
/// Longest line read: far above any record the broker writes, low enough that a foreign file
/// without line breaks is refused without reading all of it into memory.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// The first line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`MAGIC`].
    pub format: String,
    /// The file format, [`VERSION`].
    pub version: u32,
    /// The store it was taken from: `embedded` or `redis`.
    pub store: String,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The consent-broker version that took it.
    pub broker_version: String,
}

impl Header {
    /// A header for a backup of `store` taken now by this build.
    pub fn new(store: &str) -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self {
            format: MAGIC.to_string(),
            version: VERSION,
            store: store.to_string(),
            created_at: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            broker_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine {
    key: String,
    version: u64,
    expires_at_ms: u64,
    value: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberLine {
    index: String,
    member: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    records: u64,
    index_members: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Record(RecordLine),
    Member(MemberLine),
    End(Trailer),
}

/// Writes a backup line by line, keeping the counts and the digest for the trailer.
pub struct Writer<W: Write> {
    out: W,
    digest: Sha256,
    records: u64,
    members: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a backup on `out` with `header`.
    pub fn new(out: W, header: &Header) -> std::io::Result<Self> {
        let mut w = Self {
            out,
            digest: Sha256::new(),
            records: 0,
            members: 0,
        };
        w.line(header)?;
        Ok(w)
    }

    fn line(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(value)?;
        bytes.push(b'\n');
        self.digest.update(&bytes);
        self.out.write_all(&bytes)
    }

    /// Adds one record or index member.
    pub fn entry(&mut self, entry: &Entry) -> std::io::Result<()> {
        match entry {
            Entry::Record(r) => {
                self.records += 1;
                self.line(&Line::Record(RecordLine {
                    key: r.key.clone(),
                    version: r.version,
                    expires_at_ms: r.expires_at_ms,
                    value: BASE64.encode(&r.value),
                }))
            }
            Entry::IndexMember { index, member } => {
                self.members += 1;
                self.line(&Line::Member(MemberLine {
                    index: index.clone(),
                    member: member.clone(),
                }))
            }
        }
    }

    /// Writes the trailer and hands the output back (not flushed).
    pub fn finish(mut self) -> std::io::Result<W> {
        let trailer = Line::End(Trailer {
            records: self.records,
            index_members: self.members,
            sha256: hex(&self.digest.clone().finalize()),
        });
        let mut bytes = serde_json::to_vec(&trailer)?;
        bytes.push(b'\n');
        self.out.write_all(&bytes)?;
        Ok(self.out)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A whole backup, checked.
#[derive(Debug)]
pub struct Backup {
    /// Its header.
    pub header: Header,
    /// Its records and index members, in file order.
    pub entries: Vec<Entry>,
}

/// Why a file is not a usable backup (with the line, where there is one). Never quotes the
/// file's content: a record's bytes may be a sealed secret, and a foreign file anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Reading the file failed.
    #[error("reading it failed: {0}")]
    Io(String),
    /// The first line is not a backup header.
    #[error("it is not a consent-broker backup (the first line is not its header)")]
    Foreign,
    /// A backup in a format this build does not read.
    #[error(
        "it is a backup in format {0}, newer than this consent-broker reads ({VERSION}); restore it with the version that took it or a newer one"
    )]
    NewerFormat(u32),
    /// A line that is not what the format allows there.
    #[error("line {line}: {reason}")]
    Line {
        /// The line number (from 1).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file ends before its trailer.
    #[error("it is truncated: it ends without its closing line")]
    Truncated,
    /// The trailer disagrees with the file.
    #[error("it is damaged: {0}")]
    Damaged(String),
}

/// Reads and checks a whole backup.
pub fn read(mut input: impl BufRead) -> Result<Backup, FormatError> {
    let mut digest = Sha256::new();
    let mut buf = Vec::new();
    let mut number = 0;
    let mut next_line = |buf: &mut Vec<u8>| -> Result<bool, FormatError> {
        buf.clear();
        let n = input
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', buf)
            .map_err(|e| FormatError::Io(e.to_string()))?;
        Ok(n > 0)
    };

    if !next_line(&mut buf)? {
        return Err(FormatError::Foreign);
    }
    number += 1;
    if buf.len() > MAX_LINE || !buf.ends_with(b"\n") {
        return Err(FormatError::Foreign);
    }
    let header = parse_header(&buf)?;
    digest.update(&buf);

    let mut entries = Vec::new();
    let mut keys = HashSet::new();
    let (mut records, mut members) = (0u64, 0u64);
    loop {
        if !next_line(&mut buf)? {
            return Err(FormatError::Truncated);
        }
        number += 1;
        let bad = |reason: &str| FormatError::Line {
            line: number,
            reason: reason.to_string(),
        };
        if buf.len() > MAX_LINE {
            return Err(bad("longer than any line a backup holds"));
        }
        if !buf.ends_with(b"\n") {
            return Err(FormatError::Truncated);
        }
        let line: Line = serde_json::from_slice(&buf).map_err(|e| FormatError::Line {
            line: number,
            reason: format!("not a backup line ({})", e.classify_text()),
        })?;
        match line {
            Line::Record(r) => {
                if r.key.is_empty() || r.version == 0 {
                    return Err(bad("a record needs a key and a version of at least 1"));
                }
                let value = BASE64
                    .decode(r.value.as_bytes())
                    .map_err(|_| bad("the record's value is not base64"))?;
                if !keys.insert(r.key.clone()) {
                    return Err(bad("a record key that came before"));
                }
                records += 1;
                entries.push(Entry::Record(RawRecord {
                    key: r.key,
                    value,
                    version: r.version,
                    expires_at_ms: r.expires_at_ms,
                }));
            }
            Line::Member(m) => {
                if m.index.is_empty() {
                    return Err(bad("an index member needs an index"));
                }
                members += 1;
                entries.push(Entry::IndexMember {
                    index: m.index,
                    member: m.member,
                });
            }
            Line::End(t) => {
                if next_line(&mut buf)? {
                    return Err(FormatError::Line {
                        line: number + 1,
                        reason: "a line after the closing line".into(),
                    });
                }
                if (t.records, t.index_members) != (records, members) {
                    return Err(FormatError::Damaged(format!(
                        "its closing line counts {} records and {} index members, the file holds {records} and {members}",
                        t.records, t.index_members
                    )));
                }
                if t.sha256 != hex(&digest.finalize()) {
                    return Err(FormatError::Damaged("its checksum does not match its content".into()));
                }
                return Ok(Backup { header, entries });
            }
        }
        digest.update(&buf);
    }
}

fn parse_header(line: &[u8]) -> Result<Header, FormatError> {
    // The magic and the version first, so that a newer format with other header fields is
    // named as such rather than as a foreign file.
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|_| FormatError::Foreign)?;
    if value.get("format").and_then(|f| f.as_str()) != Some(MAGIC) {
        return Err(FormatError::Foreign);
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) if v > u64::from(VERSION) => {
            return Err(FormatError::NewerFormat(u32::try_from(v).unwrap_or(u32::MAX)));
        }
        _ => {
            return Err(FormatError::Line {
                line: 1,
                reason: "the header has no valid format version".into(),
            });
        }
    }
    let header: Header = serde_json::from_value(value).map_err(|e| FormatError::Line {
        line: 1,
        reason: format!("not a valid header ({})", e.classify_text()),
    })?;
    if !matches!(header.store.as_str(), "embedded" | "redis") {
        return Err(FormatError::Line {
            line: 1,
            reason: "the header names no known store".into(),
        });
    }
    Ok(header)
}

/// How serde_json classes an error, without its text (which may quote the input).
trait Classify {
    fn classify_text(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected fields or values",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &Header::new("embedded")).unwrap();
        w.entry(&Entry::Record(RawRecord {
            key: "conn:{c1}".into(),
            value: vec![1, 0, 255, b'\n'],
            version: 3,
            expires_at_ms: 0,
        }))
        .unwrap();
        w.entry(&Entry::IndexMember {
            index: "connlist:files".into(),
            member: "0001:c1".into(),
        })
        .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let backup = read(sample().as_slice()).unwrap();
        assert_eq!(backup.header.store, "embedded");
        assert_eq!(backup.entries.len(), 2);
        assert!(
            matches!(&backup.entries[0], Entry::Record(r) if r.value == [1, 0, 255, b'\n'] && r.version == 3),
            "binary values survive"
        );
    }

    #[test]
    fn damaged_truncated_and_foreign_files_are_refused() {
        let good = sample();
        // Cut anywhere: refused, whatever the cut.
        for cut in 0..good.len() {
            assert!(read(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Any one byte changed: refused (the digest, the counts or the JSON).
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(read(bad.as_slice()).is_err(), "byte {at} changed");
        }
        assert_eq!(read(&b"PNG\x00\x01"[..]).unwrap_err(), FormatError::Foreign);
        assert_eq!(read(&b"{\"a\":1}\n"[..]).unwrap_err(), FormatError::Foreign);
        let newer = String::from_utf8(good.clone())
            .unwrap()
            .replacen("\"version\":1", "\"version\":2", 1);
        assert_eq!(read(newer.as_bytes()).unwrap_err(), FormatError::NewerFormat(2));
        let mut extra = good.clone();
        extra.extend_from_slice(b"{}\n");
        assert!(matches!(read(extra.as_slice()), Err(FormatError::Line { line: 5, .. })));
    }

    #[test]
    fn errors_never_quote_the_file() {
        let good = String::from_utf8(sample()).unwrap();
        let secret = "c2VjcmV0LXRva2Vu";
        let bad = good.replacen("\"value\":\"", &format!("\"value\":{secret},\"x\":\""), 1);
        let e = read(bad.as_bytes()).unwrap_err().to_string();
        assert!(!e.contains(secret) && e.starts_with("line 2"), "{e}");
    }
}
