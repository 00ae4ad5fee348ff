//! The PostgreSQL accessory image (`ballast lab image postgres`) on the
//! local engine: its data lives in a host directory and survives a clean
//! stop and a new container; hello's `/db` writes and reads rows in it.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ballast_core::Engine;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use common::*;

/// How long postgres may take to answer after its container starts
/// (initdb included).
const READY: Duration = Duration::from_secs(60);
/// The stop timeout the test gives: a clean shutdown takes well under it.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Count and checksum of the rows, as hello's `/db` computes them.
const SUMMARY: &str = "SELECT count(*) || ' ' || encode(sha256(convert_to(coalesce(string_agg(id::text || ':' || payload, E'\\n' ORDER BY id), ''), 'UTF8')), 'hex') FROM hello_rows";

/// The image's tag, built (or found) through the CLI, as a user would.
fn postgres_image() -> String {
    let home = tempfile::tempdir().unwrap();
    let out = ballast(home.path(), &["lab", "image", "postgres"]);
    assert!(out.status.success(), "{}", text(&out));
    let tag = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(tag, ballast_lab::postgres::image_tag());
    tag
}

/// A password no one could guess, different in every run.
fn password() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("pg-{nanos:x}-{}", std::process::id())
}

/// Containers made by one test, removed (with their anonymous volumes) when
/// it ends, pass or fail. Labelled like test labs, so `.ci/run` sweeps any
/// that a killed test leaves behind.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .output();
        }
    }
}

/// A network removed when the test ends (put it after its containers in a
/// tuple: fields drop in order).
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

/// A postgres container on `data`, with `env` and `binds` added.
async fn run_postgres(
    engine: &Engine,
    image: &str,
    name: &str,
    data: &Path,
    env: Vec<String>,
    mut binds: Vec<String>,
    network: Option<&str>,
) {
    binds.push(format!(
        "{}:{}",
        data.display(),
        ballast_lab::postgres::DATA_DIR
    ));
    run_container(engine, image, name, env, binds, None, network).await;
}

/// Runs `image` as `name` under docker-init, on `network` if given (else
/// the default bridge), `port` (if any) published on a free loopback port
/// (returned).
async fn run_container(
    engine: &Engine,
    image: &str,
    name: &str,
    env: Vec<String>,
    binds: Vec<String>,
    port: Option<&str>,
    network: Option<&str>,
) -> Option<u16> {
    let body = ContainerCreateBody {
        image: Some(image.into()),
        env: Some(env),
        labels: Some([("io.ballast.lab".to_string(), lab_name("postgres"))].into()),
        host_config: Some(HostConfig {
            binds: Some(binds),
            port_bindings: port.map(|port| {
                [(
                    port.to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some("0".into()),
                    }]),
                )]
                .into()
            }),
            init: Some(true),
            network_mode: network.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    };
    let docker = engine.docker();
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker.create_container(Some(options), body).await.unwrap();
    docker.start_container(name, None).await.unwrap();
    let inspect = docker.inspect_container(name, None).await.unwrap();
    let port = port?;
    let ports = inspect.network_settings.unwrap().ports.unwrap();
    let bound = ports[port].as_ref().unwrap()[0].host_port.clone();
    Some(bound.unwrap().parse().unwrap())
}

/// Runs `sql` with the image's own psql inside container `name`, over TCP
/// (so with the password: scram-sha-256), the password passed in psql's
/// environment (`docker exec -e PGPASSWORD` takes it from ours), never in
/// an argument.
fn psql(name: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("docker")
        .args([
            "exec",
            "-e",
            "PGPASSWORD",
            "-e",
            "PGCONNECT_TIMEOUT=5",
            name,
        ])
        .args([
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
        .env("PGPASSWORD", password)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run docker exec");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Waits until postgres answers a query, or fails with the container's log.
async fn wait_ready(engine: &Engine, name: &str, password: &str) {
    let until = Instant::now() + READY;
    loop {
        match psql(name, password, "SELECT 1") {
            Ok(_) => return,
            Err(e) if Instant::now() >= until => {
                panic!(
                    "postgres did not answer within {READY:?}: {e}\n{}",
                    logs(engine, name).await
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn logs(engine: &Engine, name: &str) -> String {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = engine.docker().logs(name, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&chunk.to_string());
    }
    text
}

/// Waits for the container to exit and returns its exit code.
async fn exit_code(engine: &Engine, name: &str) -> i64 {
    let until = Instant::now() + STOP_TIMEOUT;
    loop {
        let inspect = engine.docker().inspect_container(name, None).await.unwrap();
        let state = inspect.state.unwrap();
        if state.running != Some(true) {
            return state.exit_code.unwrap();
        }
        assert!(Instant::now() < until, "{name} still runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn postgres_image_keeps_rows_across_a_clean_stop_and_a_new_container() {
    require_engine!();
    let image = postgres_image();
    let data_root = tempfile::tempdir_in("/var/tmp").unwrap();
    let data = data_root.path().join("db");
    std::fs::create_dir(&data).unwrap();
    let secret = password();
    let secret_file = data_root.path().join("POSTGRES_PASSWORD");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let read_only = std::os::unix::fs::PermissionsExt::from_mode(0o400);
    std::fs::set_permissions(&secret_file, read_only).unwrap();
    let first = format!("{}-first", lab_name("postgres"));
    let second = format!("{}-second", lab_name("postgres"));
    let _cleanup = Containers(vec![first.clone(), second.clone()]);

    runtime().block_on(async {
        let engine = local_engine().await;
        // First boot: an empty, root-owned host directory, the password in a
        // read-only file as `secret_files` delivers it.
        run_postgres(
            &engine,
            &image,
            &first,
            &data,
            vec!["POSTGRES_PASSWORD_FILE=/run/secrets/POSTGRES_PASSWORD".into()],
            vec![format!(
                "{}:/run/secrets/POSTGRES_PASSWORD:ro",
                secret_file.display()
            )],
            None,
        )
        .await;
        wait_ready(&engine, &first, &secret).await;
        let refused = psql(&first, "not-the-password", "SELECT 1").unwrap_err();
        assert!(
            refused.contains("password authentication failed"),
            "{refused}"
        );
        psql(
            &first,
            &secret,
            "CREATE TABLE hello_rows (id bigserial PRIMARY KEY, payload text NOT NULL)",
        )
        .unwrap();
        psql(
            &first,
            &secret,
            "INSERT INTO hello_rows (payload) SELECT 'row ' || n FROM generate_series(1, 500) n",
        )
        .unwrap();
        let before = psql(&first, &secret, SUMMARY).unwrap();
        assert!(before.starts_with("500 "), "{before}");

        // `docker stop`: the image's stop signal (SIGINT) is a fast shutdown.
        let started = Instant::now();
        let stop = StopContainerOptionsBuilder::default()
            .t(STOP_TIMEOUT.as_secs() as i32)
            .build();
        engine
            .docker()
            .stop_container(&first, Some(stop))
            .await
            .unwrap();
        let took = started.elapsed();
        eprintln!("postgres stopped in {took:?}");
        assert!(took < STOP_TIMEOUT / 2, "stop took {took:?}");
        assert_eq!(exit_code(&engine, &first).await, 0);
        let log = logs(&engine, &first).await;
        assert!(log.contains("database system is shut down"), "{log}");
        assert!(!log.contains(&secret), "the password is in the log");

        // The files belong to the image's postgres user, as published for
        // `directories[].owner`.
        use std::os::unix::fs::MetadataExt;
        let owner = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        let postgres = (ballast_lab::postgres::UID, ballast_lab::postgres::GID);
        assert_eq!(owner(&data), postgres);
        assert_eq!(owner(&data.join("PG_VERSION")), postgres);
        // ballast sets the configured owner on the directory at every boot:
        // with another one (root here), postgres gets its directory back.
        std::os::unix::fs::chown(&data, Some(0), Some(0)).unwrap();

        // A new container on the same directory, with no password at all:
        // the database is found, not made again.
        run_postgres(&engine, &image, &second, &data, vec![], vec![], None).await;
        wait_ready(&engine, &second, &secret).await;
        assert_eq!(psql(&second, &secret, SUMMARY).unwrap(), before);
        let log = logs(&engine, &second).await;
        assert!(!log.contains("initializing"), "{log}");
        assert!(!log.contains("not properly shut down"), "{log}");

        // SIGTERM itself reaches postgres (a smart shutdown): it exits 0.
        let term = KillContainerOptionsBuilder::default()
            .signal("SIGTERM")
            .build();
        engine
            .docker()
            .kill_container(&second, Some(term))
            .await
            .unwrap();
        assert_eq!(exit_code(&engine, &second).await, 0);
        let log = logs(&engine, &second).await;
        assert!(log.contains("smart shutdown request"), "{log}");
    });
}

/// POST to `url` with an empty body; returns status and body.
async fn http_post(url: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::post(url).body(Empty::new()).unwrap();
    let work = async {
        let resp = client.request(request).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(15), work)
        .await
        .unwrap_or_else(|_| panic!("{url}: no answer within 15s"))
}

/// What `count=N checksum=HEX` should say for rows `id:payload`, computed
/// here with coreutils' sha256sum, independently of the database.
fn expected_summary(payloads: &[String]) -> String {
    use std::io::Write;
    let lines: Vec<String> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}:{p}", i + 1))
        .collect();
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    let hex = hex.split_whitespace().next().unwrap().to_string();
    format!("count={} checksum={hex}\n", payloads.len())
}

#[test]
fn hello_db_writes_and_reads_rows_in_the_postgres_image() {
    require_engine!();
    let image = postgres_image();
    let hello = hello_image("pg-db");
    let data_root = tempfile::tempdir_in("/var/tmp").unwrap();
    let data = data_root.path().join("db");
    std::fs::create_dir(&data).unwrap();
    let secret = password();
    let secret_file = data_root.path().join("DATABASE_PASSWORD");
    std::fs::write(&secret_file, &secret).unwrap();
    let db = format!("{}-db", lab_name("postgres"));
    let app = format!("{}-app", lab_name("postgres"));
    // A network of the test's own: hello reaches the database by name,
    // which still holds when a restart gives the database another address
    // (on the default bridge another test's container may take its old one).
    let net = format!("{}-net", lab_name("postgres"));
    let made = Command::new("docker")
        .args(["network", "create", "--label"])
        .arg(format!("io.ballast.lab={}", lab_name("postgres")))
        .arg(&net)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let _cleanup = (
        Containers(vec![db.clone(), app.clone()]),
        Network(net.clone()),
    );

    runtime().block_on(async {
        let engine = local_engine().await;
        let mount = format!("{}:/run/secrets/password:ro", secret_file.display());
        run_postgres(
            &engine,
            &image,
            &db,
            &data,
            vec!["POSTGRES_PASSWORD_FILE=/run/secrets/password".into()],
            vec![mount.clone()],
            Some(&net),
        )
        .await;
        wait_ready(&engine, &db, &secret).await;
        let port = run_container(
            &engine,
            &hello,
            &app,
            vec![
                format!("DATABASE_HOST={db}"),
                "DATABASE_PORT=5432".into(),
                "DATABASE_PASSWORD_FILE=/run/secrets/password".into(),
            ],
            vec![mount],
            Some("8080/tcp"),
            Some(&net),
        )
        .await
        .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        wait_http_ok(&format!("{base}/up"), Duration::from_secs(20)).await;

        // An empty table first (made by hello), then 30 rows.
        let (status, empty) = http_get(&format!("{base}/db")).await.unwrap();
        assert_eq!(
            (status, empty.as_str()),
            (200, expected_summary(&[]).as_str())
        );
        let payloads: Vec<String> = (1..=30).map(|n| format!("row {n} é")).collect();
        for (i, payload) in payloads.iter().enumerate() {
            let query = payload.replace(' ', "+").replace('é', "%C3%A9");
            let (status, body) = http_post(&format!("{base}/db?payload={query}")).await;
            assert_eq!((status, body), (200, format!("id={}\n", i + 1)));
        }
        let summary = expected_summary(&payloads);
        let (status, body) = http_get(&format!("{base}/db")).await.unwrap();
        assert_eq!((status, body.as_str()), (200, summary.as_str()));

        // The database stopped: /db says so at once, the rest of hello is
        // unaffected, and no answer holds the password.
        engine.docker().stop_container(&db, None).await.unwrap();
        let started = Instant::now();
        let (status, down) = http_get(&format!("{base}/db")).await.unwrap();
        assert_eq!(status, 503, "{down}");
        assert!(down.starts_with("database unavailable: "), "{down}");
        assert!(!down.contains(&secret), "{down}");
        assert!(started.elapsed() < Duration::from_secs(11));
        let (status, _) = http_get(&format!("{base}/up")).await.unwrap();
        assert_eq!(status, 200);

        // Back: the same rows.
        engine.docker().start_container(&db, None).await.unwrap();
        let until = Instant::now() + READY;
        loop {
            let (status, body) = http_get(&format!("{base}/db")).await.unwrap();
            if status == 200 {
                assert_eq!(body, summary);
                break;
            }
            assert!(Instant::now() < until, "/db did not come back: {body}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let log = logs(&engine, &app).await;
        assert!(!log.contains(&secret), "the password is in hello's log");
    });
}
