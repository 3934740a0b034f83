//! Reading an export file: its lines, numbered and hashed as they are read,
//! the header, and the checks of its rows against the header and the end
//! line.

use std::{collections::BTreeMap, io::BufRead};

use indicatif::ProgressBar;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{End, FORMAT, Header, VERSION, hex};
use crate::error::{ApiError, Result};

/// Reads lines, numbering them, hashing them, and reporting bytes read.
pub(super) struct LineReader<'a> {
    input: &'a mut dyn BufRead,
    progress: &'a ProgressBar,
    hasher: Sha256,
    /// The number of the line read last (1-based).
    pub number: u64,
    buffer: Vec<u8>,
}

impl<'a> LineReader<'a> {
    pub fn new(input: &'a mut dyn BufRead, progress: &'a ProgressBar) -> Self {
        Self {
            input,
            progress,
            hasher: Sha256::new(),
            number: 0,
            buffer: Vec::new(),
        }
    }

    /// The next line parsed as JSON, and the digest of everything before it;
    /// `None` at the end of the input.
    pub fn next(&mut self) -> Result<Option<(Value, String)>> {
        self.buffer.clear();
        let read = self
            .input
            .read_until(b'\n', &mut self.buffer)
            .map_err(|error| ApiError::BadRequest(format!("could not read the file: {error}")))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        self.progress.inc(read as u64);
        let before = hex(&self.hasher.clone().finalize());
        self.hasher.update(&self.buffer);
        if self.buffer.last() != Some(&b'\n') {
            return Err(self.invalid("the line is cut short (truncated file?)"));
        }
        let value = serde_json::from_slice(&self.buffer)
            .map_err(|error| self.invalid(&format!("not valid JSON ({error})")))?;
        Ok(Some((value, before)))
    }

    pub fn invalid(&self, problem: &str) -> ApiError {
        ApiError::BadRequest(format!("line {}: {problem}", self.number))
    }
}

pub(super) fn read_header(reader: &mut LineReader<'_>) -> Result<Header> {
    let (value, _) = reader
        .next()?
        .ok_or_else(|| ApiError::BadRequest("the file is empty".to_owned()))?;
    if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(reader.invalid(&format!(
            "not a tenant export (expected a header with \"format\": \"{FORMAT}\")"
        )));
    }
    match value.get("version").and_then(Value::as_u64) {
        Some(version) if version == u64::from(VERSION) => {}
        Some(version) => {
            return Err(reader.invalid(&format!("export format version {version} is not supported; this tenantry reads version {VERSION}")));
        }
        None => return Err(reader.invalid("the header has no format version")),
    }
    serde_json::from_value(value)
        .map_err(|error| reader.invalid(&format!("the header is malformed ({error})")))
}

pub(super) fn source_tenant_id(tenant: &Map<String, Value>) -> Result<Uuid> {
    tenant
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            ApiError::BadRequest("line 1: the header's tenant has no valid id".to_owned())
        })
}

pub(super) fn parse_row_line(
    value: Value,
) -> std::result::Result<(String, Map<String, Value>), String> {
    let Value::Object(mut line) = value else {
        return Err("expected a JSON object".to_owned());
    };
    match (line.remove("table"), line.remove("row")) {
        (Some(Value::String(table)), Some(Value::Object(row))) => Ok((table, row)),
        _ => Err("expected {\"table\": ..., \"row\": {...}} or the end line".to_owned()),
    }
}

pub(super) fn check_totals(
    header: &BTreeMap<String, u64>,
    seen: &BTreeMap<String, u64>,
    end: &End,
    digest: &str,
) -> Result<()> {
    if end.sha256 != digest {
        return Err(ApiError::BadRequest(
            "the file's checksum does not match its content (corrupted or edited); nothing was imported".to_owned(),
        ));
    }
    let counted = |rows: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        rows.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| (t.clone(), *n))
            .collect()
    };
    if counted(header) != counted(seen) || counted(&end.rows) != counted(seen) {
        return Err(ApiError::BadRequest(format!(
            "the file announces {header:?} rows but holds {seen:?}; nothing was imported"
        )));
    }
    Ok(())
}
