//! `/db`: rows in a PostgreSQL database, so tests can prove that data kept by
//! an accessory outlives deploys, reboots and upgrades.
//!
//! `POST /db` inserts one row (its payload is the request body, or the
//! `payload` query parameter when the body is empty) and answers `id=N`;
//! `GET /db` answers `count=N checksum=HEX`, the SHA-256 (computed by the
//! database) of every row as `id:payload` lines ordered by id.
//!
//! Settings come from the environment: `DATABASE_HOST` (without it `/db`
//! answers 503 and the rest of hello works as before), `DATABASE_PORT`
//! (5432), `DATABASE_USER` (postgres), `DATABASE_NAME` (postgres), and the
//! password from the file named by `DATABASE_PASSWORD_FILE` (read at each
//! connection, so a rotated file is picked up) or `DATABASE_PASSWORD`.
//! Each request opens its own connection (no TLS) under [`DEADLINE`]; a
//! database error answers 503 with a short message that never holds the
//! password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper::{Method, StatusCode};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// Everything one `/db` request does with the database, connection included.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long connecting may take, within [`DEADLINE`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long reading the request body may take.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// The largest payload accepted.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The longest error message sent back.
const MAX_MESSAGE: usize = 200;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS hello_rows (
    id bigserial PRIMARY KEY,
    payload text NOT NULL,
    written_by text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
)";
const INSERT: &str = "INSERT INTO hello_rows (payload, written_by) VALUES ($1, $2) RETURNING id";
/// Count and checksum read in one statement, so both see the same rows.
const SUMMARY: &str = "SELECT count(*), encode(sha256(convert_to(
    coalesce(string_agg(id::text || ':' || payload, E'\\n' ORDER BY id), ''), 'UTF8')), 'hex')
    FROM hello_rows";

/// Where the database is, as the environment says; `Unset` without
/// `DATABASE_HOST`, `Invalid` (with the reason) when a setting is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    Unset,
    Invalid(String),
    Configured(DbConfig),
}

/// How to reach the database. Debug output leaves the password out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Password,
}

/// Where the password comes from; its Debug output never shows a value.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    None,
    /// `DATABASE_PASSWORD`.
    Value(String),
    /// The file `DATABASE_PASSWORD_FILE` names, read at each connection.
    File(PathBuf),
}

/// What a `/db` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ask {
    Insert(String),
    Summary,
}

impl Db {
    /// Reads the settings from this process's environment.
    pub fn from_env() -> Db {
        Db::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var`; empty values count as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Db {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let Some(host) = var("DATABASE_HOST") else {
            return Db::Unset;
        };
        let port = match var("DATABASE_PORT") {
            None => 5432,
            Some(p) => match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => {
                    return Db::Invalid(format!(
                        "DATABASE_PORT={p:?} is not a port number (1 to 65535)"
                    ))
                }
            },
        };
        let password = match (var("DATABASE_PASSWORD_FILE"), var("DATABASE_PASSWORD")) {
            (Some(file), _) => Password::File(PathBuf::from(file)),
            (None, Some(value)) => Password::Value(value),
            (None, None) => Password::None,
        };
        Db::Configured(DbConfig {
            host: host.trim().to_string(),
            port,
            user: var("DATABASE_USER").unwrap_or_else(|| "postgres".into()),
            dbname: var("DATABASE_NAME").unwrap_or_else(|| "postgres".into()),
            password,
        })
    }

    /// Answers one `/db` request: a status and a one-line text body.
    pub async fn respond<B>(
        &self,
        method: &Method,
        query: Option<&str>,
        body: B,
        writer: &str,
    ) -> (StatusCode, String)
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ask = match *method {
            Method::GET => Ask::Summary,
            Method::POST => match read_payload(body, query).await {
                Ok(payload) => Ask::Insert(payload),
                Err(answer) => return answer,
            },
            _ => {
                return (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET /db (count and checksum) or POST /db (insert a row)\n".into(),
                )
            }
        };
        let config = match self {
            Db::Unset => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no database: set DATABASE_HOST\n".into(),
                )
            }
            Db::Invalid(why) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            Db::Configured(config) => config,
        };
        match tokio::time::timeout(DEADLINE, config.run(&ask, writer)).await {
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "database unavailable: no answer within {}s\n",
                    DEADLINE.as_secs()
                ),
            ),
            Ok(Err(why)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("database unavailable: {}\n", config.redact(&why)),
            ),
            Ok(Ok(text)) => (StatusCode::OK, text),
        }
    }
}

impl DbConfig {
    /// Connects, makes the table if missing, and does what was asked.
    async fn run(&self, ask: &Ask, writer: &str) -> Result<String, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("hello")
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(password) = self.password()? {
            config.password(password);
        }
        let (client, connection) = config.connect(NoTls).await.map_err(short)?;
        // The connection ends when the client is dropped, at the latest when
        // the request's deadline drops this future.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        if let Err(e) = client.batch_execute(CREATE_TABLE).await {
            // Two first writers at once: the other one made it.
            let raced = [SqlState::UNIQUE_VIOLATION, SqlState::DUPLICATE_TABLE];
            if !e.code().is_some_and(|c| raced.contains(c)) {
                return Err(short(e));
            }
        }
        match ask {
            Ask::Insert(payload) => {
                let row = client
                    .query_one(INSERT, &[payload, &writer])
                    .await
                    .map_err(short)?;
                let id: i64 = row.get(0);
                Ok(format!("id={id}\n"))
            }
            Ask::Summary => {
                let row = client.query_one(SUMMARY, &[]).await.map_err(short)?;
                let count: i64 = row.get(0);
                let checksum: String = row.get(1);
                Ok(format!("count={count} checksum={checksum}\n"))
            }
        }
    }

    /// The password, read now from its file when it has one; a file's
    /// trailing newline is not part of it.
    fn password(&self) -> Result<Option<String>, String> {
        match &self.password {
            Password::None => Ok(None),
            Password::Value(v) => Ok(Some(v.clone())),
            Password::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(text.trim_end_matches(['\r', '\n']).to_string())),
                Err(e) => Err(format!(
                    "cannot read DATABASE_PASSWORD_FILE {}: {}",
                    path.display(),
                    e.kind()
                )),
            },
        }
    }

    /// `message` without the password, should a server or library ever
    /// echo it.
    fn redact(&self, message: &str) -> String {
        match self.password() {
            Ok(Some(p)) if !p.is_empty() => message.replace(&p, "[redacted]"),
            _ => message.to_string(),
        }
    }
}

/// The first line of an error's text, at most [`MAX_MESSAGE`] bytes; for a
/// server error its message, which names no password.
fn short(e: tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            // "error connecting to server" alone does not say why.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            text
        }
    };
    let mut line = text.lines().next().unwrap_or("").to_string();
    if line.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// The row's payload: the body when it has one, else the `payload` query
/// parameter, else empty.
async fn read_payload<B>(body: B, query: Option<&str>) -> Result<String, (StatusCode, String)>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let collected = tokio::time::timeout(BODY_DEADLINE, Limited::new(body, MAX_PAYLOAD).collect());
    let bytes = match collected.await {
        Err(_) => {
            return Err((
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time\n".into(),
            ))
        }
        Ok(Err(e)) => {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body refused (at most {MAX_PAYLOAD} bytes): {e}\n"),
            ))
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    if !bytes.is_empty() {
        return String::from_utf8(bytes.to_vec())
            .map_err(|_| (StatusCode::BAD_REQUEST, "the body is not UTF-8\n".into()));
    }
    let param = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("payload="));
    match param.map(percent_decode) {
        None => Ok(String::new()),
        Some(Some(p)) if p.len() <= MAX_PAYLOAD => Ok(p),
        Some(_) => Err((
            StatusCode::BAD_REQUEST,
            "the payload parameter is not percent-encoded UTF-8\n".into(),
        )),
    }
}

/// Decodes `%XX` and `+` (a space) in a query value.
fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::None => f.write_str("None"),
            Password::Value(_) => f.write_str("Value([redacted])"),
            Password::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::collections::HashMap;

    fn db(vars: &[(&str, &str)]) -> Db {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Db::from_vars(|name| vars.get(name).cloned())
    }

    fn body(text: &str) -> Full<Bytes> {
        Full::new(Bytes::from(text.to_string()))
    }

    #[test]
    fn settings_default_to_the_postgres_user_and_database() {
        assert_eq!(db(&[]), Db::Unset);
        assert_eq!(db(&[("DATABASE_HOST", " ")]), Db::Unset);
        assert_eq!(
            db(&[("DATABASE_HOST", "10.0.0.20"), ("DATABASE_PASSWORD", "pw")]),
            Db::Configured(DbConfig {
                host: "10.0.0.20".into(),
                port: 5432,
                user: "postgres".into(),
                dbname: "postgres".into(),
                password: Password::Value("pw".into()),
            })
        );
    }

    #[test]
    fn the_password_file_wins_over_the_value() {
        let Db::Configured(config) = db(&[
            ("DATABASE_HOST", "db"),
            ("DATABASE_PORT", "6432"),
            ("DATABASE_USER", "app"),
            ("DATABASE_NAME", "shop"),
            ("DATABASE_PASSWORD", "pw"),
            ("DATABASE_PASSWORD_FILE", "/run/secrets/DATABASE_PASSWORD"),
        ]) else {
            panic!("not configured")
        };
        assert_eq!(
            (config.port, config.user.as_str(), config.dbname.as_str()),
            (6432, "app", "shop")
        );
        assert_eq!(
            config.password,
            Password::File("/run/secrets/DATABASE_PASSWORD".into())
        );
    }

    #[test]
    fn a_bad_port_is_named() {
        for bad in ["x", "0", "70000"] {
            let Db::Invalid(why) = db(&[("DATABASE_HOST", "db"), ("DATABASE_PORT", bad)]) else {
                panic!("{bad} accepted")
            };
            assert!(why.starts_with("DATABASE_PORT="), "{why}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let d = db(&[
            ("DATABASE_HOST", "db"),
            ("DATABASE_PASSWORD", "hunter2-secret"),
        ]);
        let text = format!("{d:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[tokio::test]
    async fn without_a_host_db_answers_503_and_says_what_to_set() {
        for method in [Method::GET, Method::POST] {
            let (status, text) = Db::Unset.respond(&method, None, body("x"), "v1").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(text, "no database: set DATABASE_HOST\n");
        }
        let invalid = db(&[("DATABASE_HOST", "db"), ("DATABASE_PORT", "x")]);
        let (status, text) = invalid.respond(&Method::GET, None, body(""), "v1").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.starts_with("DATABASE_PORT="), "{text}");
    }

    #[tokio::test]
    async fn other_methods_are_refused() {
        let (status, _) = Db::Unset
            .respond(&Method::DELETE, None, body(""), "v1")
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn the_payload_is_the_body_else_the_query_parameter() {
        assert_eq!(
            read_payload(body("from body"), Some("payload=q"))
                .await
                .unwrap(),
            "from body"
        );
        assert_eq!(
            read_payload(body(""), Some("a=1&payload=row+%C3%A9%2F1"))
                .await
                .unwrap(),
            "row é/1"
        );
        assert_eq!(read_payload(body(""), None).await.unwrap(), "");
        let (status, _) = read_payload(body(""), Some("payload=%zz"))
            .await
            .unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let big = "x".repeat(MAX_PAYLOAD + 1);
        let (status, _) = read_payload(body(&big), None).await.unwrap_err();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let not_utf8 = Full::new(Bytes::from_static(&[0xff, 0xfe]));
        let (status, _) = read_payload(not_utf8, None).await.unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    /// A port nobody listens on: the answer is a prompt 503 that names the
    /// failure and never the password.
    #[tokio::test]
    async fn an_unreachable_database_answers_503_without_the_password() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port().to_string();
        drop(free);
        let d = db(&[
            ("DATABASE_HOST", "127.0.0.1"),
            ("DATABASE_PORT", &port),
            ("DATABASE_PASSWORD", "hunter2-secret"),
        ]);
        let started = std::time::Instant::now();
        let (status, text) = d.respond(&Method::GET, None, body(""), "v1").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            text.starts_with("database unavailable: error connecting to server: "),
            "{text}"
        );
        assert!(text.contains("refused"), "the cause is named: {text}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(started.elapsed() < DEADLINE);
    }

    #[tokio::test]
    async fn an_unreadable_password_file_is_named() {
        let d = db(&[
            ("DATABASE_HOST", "127.0.0.1"),
            ("DATABASE_PASSWORD_FILE", "/nonexistent/hello-db-password"),
        ]);
        let (status, text) = d.respond(&Method::POST, None, body("row"), "v1").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            text,
            "database unavailable: cannot read DATABASE_PASSWORD_FILE /nonexistent/hello-db-password: entity not found\n"
        );
    }

    #[test]
    fn a_password_file_loses_its_trailing_newline_and_is_redacted() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "s3cret-pw\n").unwrap();
        let config = DbConfig {
            host: "db".into(),
            port: 5432,
            user: "postgres".into(),
            dbname: "postgres".into(),
            password: Password::File(file.path().to_path_buf()),
        };
        assert_eq!(config.password().unwrap().as_deref(), Some("s3cret-pw"));
        assert_eq!(
            config.redact("FATAL: no s3cret-pw here"),
            "FATAL: no [redacted] here"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
