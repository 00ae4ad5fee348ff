//! Helpers for tests of the PostgreSQL accessory image and hello's `/db`:
//! the image's tag (built or found through the CLI), a fresh password, a
//! POST with a body, and the `count=N checksum=HEX` hello should answer
//! for a list of rows, computed here without the database.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The PostgreSQL image's tag, built (or found) with `ballast lab image
/// postgres`, as a user would.
pub fn image() -> String {
    let home = tempfile::tempdir().unwrap();
    let out = super::ballast(home.path(), &["lab", "image", "postgres"]);
    assert!(out.status.success(), "{}", super::text(&out));
    let tag = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(tag, ballast_lab::postgres::image_tag());
    tag
}

/// A password no one could guess, different in every run.
pub fn password() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("pg-{nanos:x}-{}", std::process::id())
}

/// POST `body` to `url` (http only) within 15 s; returns status and body.
pub async fn http_post(url: &str, body: &str) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::post(url)
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .map_err(|e| format!("{url}: {e}"))?;
    let work = async {
        let resp = client
            .request(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(15), work)
        .await
        .map_err(|_| format!("{url}: no answer within 15s"))?
}

/// SHA-256 of `data` in hex, by coreutils' `sha256sum`: independent of
/// both the database and ballast.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hex = String::from_utf8(out.stdout).unwrap();
    hex.split_whitespace().next().unwrap().to_string()
}

/// What hello's `GET /db` answers for `rows` (id, payload): the count and
/// the SHA-256 of every row as an `id:payload` line, ordered by id, joined
/// by newlines.
pub fn summary(rows: &[(i64, String)]) -> String {
    let mut sorted: Vec<&(i64, String)> = rows.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    let lines: Vec<String> = sorted.iter().map(|(id, p)| format!("{id}:{p}")).collect();
    format!(
        "count={} checksum={}\n",
        rows.len(),
        sha256_hex(lines.join("\n").as_bytes())
    )
}
