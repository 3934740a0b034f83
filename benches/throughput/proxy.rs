//! A PostgreSQL wire-protocol proxy that records what the service sends.
//!
//! During calibration the service's `DATABASE_URL` points here instead of at
//! PostgreSQL. Every byte is forwarded unchanged; on the way through, the
//! proxy decodes the frontend messages that matter (Parse, Describe, Bind,
//! Sync, Query, Close) and the backend's ParameterDescription and
//! ReadyForQuery, so that it can log each statement *execution* with its SQL
//! text, its parameters' types and values, and whether it was sent before the
//! previous one was answered (pipelined). Prepares (Parse/Describe round
//! trips) are not executions: a warm pooled connection does not send them.
//!
//! This is independent of the server's logging configuration and of how the
//! service happens to phrase its SQL, so the pgbench scripts are built from
//! exactly what the binary under test sends.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    task::JoinHandle,
};
use uuid::Uuid;

/// A bound parameter, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Uuid(Uuid),
    Text(String),
    Int(i64),
    Bool(bool),
    /// timestamptz / timestamp, as RFC 3339.
    Timestamp(String),
    /// json / jsonb text.
    Json(String),
    /// Anything else, as sent.
    Bytes(Vec<u8>),
}

/// One parameter of an execution.
#[derive(Debug, Clone)]
pub struct Param {
    /// The type PostgreSQL inferred (from ParameterDescription), 0 if unknown.
    pub type_oid: u32,
    pub value: Value,
}

/// One thing the service asked PostgreSQL to run.
#[derive(Debug, Clone)]
pub enum Event {
    /// A simple-protocol Query message (tokio-postgres sends BEGIN and COMMIT so).
    Simple { sql: String, pipelined: bool },
    /// An extended-protocol execution of a prepared statement.
    Execute {
        sql: String,
        params: Vec<Param>,
        pipelined: bool,
    },
}

impl Event {
    pub fn sql(&self) -> &str {
        match self {
            Self::Simple { sql, .. } | Self::Execute { sql, .. } => sql,
        }
    }
}

/// The recording proxy; dropping it stops accepting connections.
pub struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<Event>>>,
    /// The `options` startup parameter of the latest connection.
    options: Arc<Mutex<Option<String>>>,
    accept: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (host:port).
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let options = Arc::new(Mutex::new(None));
        let accept = {
            let log = Arc::clone(&log);
            let options = Arc::clone(&options);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let log = Arc::clone(&log);
                    let options = Arc::clone(&options);
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if let Err(error) = relay(client, &upstream, log, options).await {
                            eprintln!("capture proxy: connection ended: {error:#}");
                        }
                    });
                }
            })
        };
        Ok(Self {
            port,
            log,
            options,
            accept,
        })
    }

    /// The session settings the service's connections start with: the
    /// `options` startup parameter (`-c name=value ...`), if any.
    pub fn options(&self) -> Option<String> {
        self.options
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.clear();
        }
    }

    /// Everything recorded since the last [`Proxy::clear`].
    pub fn take(&self) -> Vec<Event> {
        self.log
            .lock()
            .map(|mut log| std::mem::take(&mut *log))
            .unwrap_or_default()
    }
}

/// What one connection's two directions share.
#[derive(Default)]
struct Session {
    /// Prepared statements by name: SQL and parameter types.
    statements: HashMap<String, (String, Vec<u32>)>,
    /// Statements whose ParameterDescription is still to come, in order.
    describing: VecDeque<String>,
    /// Sync and Query messages sent but not answered by ReadyForQuery yet.
    unanswered: usize,
}

async fn relay(
    client: TcpStream,
    upstream: &str,
    log: Arc<Mutex<Vec<Event>>>,
    options: Arc<Mutex<Option<String>>>,
) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("could not connect to {upstream}"))?;
    server.set_nodelay(true)?;
    let (client_read, mut client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut client_read = BufReader::new(client_read);
    // The startup packet has no type byte; refuse TLS and GSS encryption so
    // that everything after it is plain, typed messages.
    let startup = loop {
        let packet = read_untyped(&mut client_read).await?;
        let code = packet
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if matches!(code, Some(80_877_103 | 80_877_104)) {
            client_write.write_all(b"N").await?;
            continue;
        }
        break packet;
    };
    if let Some(value) = startup_parameter(&startup, "options") {
        *options
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
    }
    let mut server_write = server_write;
    server_write.write_all(&startup).await?;
    let session = Arc::new(Mutex::new(Session::default()));
    let upward = frontend(client_read, server_write, Arc::clone(&session), log);
    let downward = backend(BufReader::new(server_read), client_write, session);
    tokio::select! {
        result = upward => result,
        result = downward => result,
    }
}

/// A parameter of a startup packet (length, protocol, then name/value pairs).
fn startup_parameter(packet: &[u8], name: &str) -> Option<String> {
    let fields: Vec<&[u8]> = packet.get(8..)?.split(|b| *b == 0).collect();
    fields
        .chunks(2)
        .find(|pair| pair.first() == Some(&name.as_bytes()))
        .and_then(|pair| pair.get(1))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

async fn read_untyped(reader: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<Vec<u8>> {
    let length = reader.read_u32().await?;
    let Some(rest) = (length as usize).checked_sub(4) else {
        bail!("bad startup packet length {length}");
    };
    let mut packet = length.to_be_bytes().to_vec();
    packet.resize(4 + rest, 0);
    reader.read_exact(&mut packet[4..]).await?;
    Ok(packet)
}

/// One typed message: its type byte and its payload (the whole message is
/// returned too, for forwarding).
async fn read_typed(
    reader: &mut BufReader<OwnedReadHalf>,
) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
    let kind = match reader.read_u8().await {
        Ok(kind) => kind,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let length = reader.read_u32().await?;
    let Some(rest) = (length as usize).checked_sub(4) else {
        bail!("bad message length {length}");
    };
    let mut payload = vec![0; rest];
    reader.read_exact(&mut payload).await?;
    Ok(Some((kind, payload)))
}

async fn write_typed(writer: &mut OwnedWriteHalf, kind: u8, payload: &[u8]) -> anyhow::Result<()> {
    let length = u32::try_from(payload.len() + 4)?;
    let mut message = Vec::with_capacity(payload.len() + 5);
    message.push(kind);
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(payload);
    writer.write_all(&message).await?;
    Ok(())
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn frontend(
    mut reader: BufReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    session: Arc<Mutex<Session>>,
    log: Arc<Mutex<Vec<Event>>>,
) -> anyhow::Result<()> {
    while let Some((kind, payload)) = read_typed(&mut reader).await? {
        let event = {
            let mut session = lock(&session);
            observe_frontend(&mut session, kind, &payload)?
        };
        if let Some(event) = event {
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(event);
        }
        write_typed(&mut writer, kind, &payload).await?;
    }
    Ok(())
}

async fn backend(
    mut reader: BufReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    session: Arc<Mutex<Session>>,
) -> anyhow::Result<()> {
    while let Some((kind, payload)) = read_typed(&mut reader).await? {
        {
            let mut session = lock(&session);
            match kind {
                b't' => {
                    let mut cursor = Cursor(&payload);
                    let count = cursor.u16()?;
                    let types = (0..count)
                        .map(|_| cursor.u32())
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    if let Some(name) = session.describing.pop_front()
                        && let Some(statement) = session.statements.get_mut(&name)
                    {
                        statement.1 = types;
                    }
                }
                // ReadyForQuery: one Sync or Query answered. Counted before
                // forwarding, so the client cannot send its next message first.
                b'Z' => session.unanswered = session.unanswered.saturating_sub(1),
                _ => {}
            }
        }
        write_typed(&mut writer, kind, &payload).await?;
    }
    Ok(())
}

/// Updates the session for one frontend message; an execution is returned.
fn observe_frontend(
    session: &mut Session,
    kind: u8,
    payload: &[u8],
) -> anyhow::Result<Option<Event>> {
    let mut cursor = Cursor(payload);
    match kind {
        b'P' => {
            let name = cursor.cstr()?;
            let sql = cursor.cstr()?;
            let count = cursor.u16()?;
            let types = (0..count)
                .map(|_| cursor.u32())
                .collect::<anyhow::Result<Vec<_>>>()?;
            session.statements.insert(name, (sql, types));
        }
        b'D' | b'C' => {
            let target = cursor.u8()?;
            let name = cursor.cstr()?;
            match (kind, target) {
                (b'D', b'S') => session.describing.push_back(name),
                (b'C', b'S') => {
                    session.statements.remove(&name);
                }
                _ => {}
            }
        }
        b'S' => session.unanswered += 1,
        b'Q' => {
            let pipelined = session.unanswered > 0;
            session.unanswered += 1;
            return Ok(Some(Event::Simple {
                sql: cursor.cstr()?,
                pipelined,
            }));
        }
        b'B' => {
            let _portal = cursor.cstr()?;
            let name = cursor.cstr()?;
            let (sql, types) =
                session.statements.get(&name).cloned().unwrap_or_else(|| {
                    (format!("<unknown prepared statement {name:?}>"), Vec::new())
                });
            let formats = (0..cursor.u16()?)
                .map(|_| cursor.u16())
                .collect::<anyhow::Result<Vec<_>>>()?;
            let count = usize::from(cursor.u16()?);
            let mut params = Vec::with_capacity(count);
            for index in 0..count {
                let format = match formats.as_slice() {
                    [] => 0,
                    [one] => *one,
                    many => many.get(index).copied().unwrap_or(0),
                };
                let type_oid = types.get(index).copied().unwrap_or(0);
                let length = cursor.i32()?;
                let value = if length < 0 {
                    Value::Null
                } else {
                    decode(type_oid, format, cursor.bytes(usize::try_from(length)?)?)
                };
                params.push(Param { type_oid, value });
            }
            return Ok(Some(Event::Execute {
                sql,
                params,
                pipelined: session.unanswered > 0,
            }));
        }
        _ => {}
    }
    Ok(None)
}

/// Decodes a parameter of type `oid`, sent in `format` (0 text, 1 binary).
fn decode(oid: u32, format: u16, bytes: &[u8]) -> Value {
    if format == 0 {
        let text = String::from_utf8_lossy(bytes).into_owned();
        return match oid {
            2950 => Uuid::parse_str(&text).map_or(Value::Text(text), Value::Uuid),
            20 | 21 | 23 => text.parse().map_or(Value::Text(text), Value::Int),
            _ => Value::Text(text),
        };
    }
    let int = |n: usize| -> Option<i64> {
        (bytes.len() == n).then(|| {
            let mut value: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                -1
            } else {
                0
            };
            for byte in bytes {
                value = (value << 8) | i64::from(*byte);
            }
            value
        })
    };
    let decoded = match oid {
        2950 => Uuid::from_slice(bytes).ok().map(Value::Uuid),
        25 | 1043 | 1042 | 19 | 705 | 0 => std::str::from_utf8(bytes)
            .ok()
            .map(|s| Value::Text(s.to_owned())),
        20 => int(8).map(Value::Int),
        23 => int(4).map(Value::Int),
        21 => int(2).map(Value::Int),
        16 => bytes.first().map(|b| Value::Bool(*b != 0)),
        1184 | 1114 => int(8).map(|micros| {
            // Microseconds since 2000-01-01 00:00:00 UTC.
            let at = DateTime::<Utc>::from_timestamp_micros(micros + 946_684_800_000_000);
            Value::Timestamp(at.map_or_else(|| micros.to_string(), |at| at.to_rfc3339()))
        }),
        3802 => bytes
            .split_first()
            .and_then(|(_, json)| std::str::from_utf8(json).ok())
            .map(|json| Value::Json(json.to_owned())),
        114 => std::str::from_utf8(bytes)
            .ok()
            .map(|json| Value::Json(json.to_owned())),
        _ => None,
    };
    decoded.unwrap_or_else(|| Value::Bytes(bytes.to_vec()))
}

/// Reads big-endian fields off a message payload.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        if self.0.len() < n {
            bail!("truncated message");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> anyhow::Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> anyhow::Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> anyhow::Result<i32> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> anyhow::Result<String> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .context("unterminated string in a message")?;
        let text = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Ok(text)
    }
}
