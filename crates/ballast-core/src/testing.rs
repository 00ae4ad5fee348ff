//! Test helpers shared by the modules of this crate.

/// Fails when the generated document `rel` (from the workspace root) differs
/// from `want`; with `UPDATE_DOCS` set, rewrites it instead. `how` says
/// which test to run to regenerate it.
pub fn check_generated_doc(rel: &str, want: &str, how: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{rel} is stale: regenerate it with `UPDATE_DOCS=1 {how}`"
    );
}

/// A `web` role on two hosts, the second with its own variable `SHARD`,
/// publishing a port, with a clear and a secret variable and a volume.
pub fn sharded_role() -> crate::config::Role {
    use crate::config::{Env, HostEntry, HostWithEnv, Role};
    use std::collections::BTreeMap;
    Role {
        hosts: vec![
            HostEntry::Address("h1".into()),
            HostEntry::WithEnv(HostWithEnv {
                host: "h2".into(),
                env: BTreeMap::from([("SHARD".into(), "2".into())]),
            }),
        ],
        cmd: None,
        port: Some(8080),
        publish: vec!["80:8080".into()],
        env: Env {
            clear: BTreeMap::from([("MODE".into(), "prod".into())]),
            secret: vec!["TOKEN".into()],
        },
        volumes: vec!["/srv/data:/data".into()],
        healthcheck: None,
        stop_timeout: None,
        init: true,
        logging: None,
        proxy: None,
        secret_files: false,
    }
}

/// Service `shop` with the [`sharded_role`] as `web`.
pub fn sharded_config() -> crate::config::Config {
    crate::config::Config {
        service: "shop".into(),
        image: "shop".into(),
        build: None,
        ssh: Default::default(),
        delivery: Default::default(),
        docker: Default::default(),
        roles: std::collections::BTreeMap::from([("web".into(), sharded_role())]),
        accessories: Default::default(),
        data_roots: Vec::new(),
        deploy: Default::default(),
        logging: Default::default(),
        hooks: Default::default(),
        aliases: Default::default(),
        require_destination: false,
        watch: Default::default(),
    }
}

/// A container of service `shop`, role `role`, at `version` (image
/// `sha256:<version>`, config digest `d`), in `state`; tests change the
/// fields they care about.
pub fn app_container(
    role: &str,
    version: &str,
    state: crate::release::ContainerState,
) -> crate::release::AppContainer {
    crate::release::AppContainer {
        id: format!("id-{role}-{version}"),
        name: crate::release::container_name("shop", role, version),
        role: role.into(),
        version: version.into(),
        image_id: format!("sha256:{version}"),
        config_digest: "d".into(),
        image_source: String::new(),
        running: state == crate::release::ContainerState::Running,
        state,
        ip: None,
        status: String::new(),
        created: 0,
        deployed_by: String::new(),
        deployed_at: String::new(),
    }
}
