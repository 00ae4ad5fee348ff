//! What every service command starts from: the loaded config and how to reach
//! its hosts.

use std::path::Path;

use ballast_core::config::{self, Loaded};
use ballast_core::fleet::Fleet;
use ballast_core::host::Reach;
use ballast_core::scope::Scope;
use ballast_core::Result;

use crate::cli::{ChangeScopeArgs, ScopeArgs};

/// Loads the config with the destination given by `-d` (main puts it in
/// `BALLAST_DESTINATION`, which also works on its own); errors name the
/// file, line and column.
pub fn load(path: &Path) -> Result<Loaded> {
    let destination = std::env::var("BALLAST_DESTINATION")
        .ok()
        .filter(|d| !d.is_empty());
    let loaded = config::load_for(path, destination.as_deref())?;
    let commands = crate::aliases::commands();
    let names: Vec<&str> = commands.iter().map(String::as_str).collect();
    loaded.check_aliases(&names)?;
    Ok(loaded)
}

/// SSH settings of the config, paths resolved against the config's directory.
pub fn reach(loaded: &Loaded, accept_new_host_keys: bool) -> Reach {
    let ssh = &loaded.config.ssh;
    let local = |p: &std::path::PathBuf| loaded.dir.join(p);
    Reach {
        user: ssh.user.clone(),
        port: ssh.port,
        identity: ssh.identity_file.as_ref().map(local),
        known_hosts: ssh.known_hosts.as_ref().map(local),
        config: ssh.config.as_ref().map(local),
        proxy_jump: ssh.proxy_jump.clone(),
        accept_new_host_keys,
        connect_timeout: ssh.connect_timeout,
        persist: Some(ssh.persist),
    }
}

pub fn concurrency(loaded: &Loaded) -> usize {
    loaded.config.concurrency()
}

/// Connects to every host of the config, the accessories' too;
/// unreachable ones are in the fleet.
pub async fn fleet(loaded: &Loaded, accept_new_host_keys: bool) -> Fleet {
    let reach = reach(loaded, accept_new_host_keys);
    Fleet::connect(&loaded.config.all_hosts(), &reach, concurrency(loaded)).await
}

/// Connects to the hosts in `scope`; unreachable ones are in the fleet.
pub async fn fleet_in(loaded: &Loaded, accept_new_host_keys: bool, scope: &Scope) -> Fleet {
    let reach = reach(loaded, accept_new_host_keys);
    let hosts = scope.hosts_of(&loaded.config);
    Fleet::connect(&hosts, &reach, concurrency(loaded)).await
}

/// The scope a read command was given, checked against the config.
pub fn scope(loaded: &Loaded, args: &ScopeArgs) -> Result<Scope> {
    Scope::new(
        &loaded.config,
        args.hosts.clone(),
        args.roles.clone(),
        false,
    )
}

/// The scope a change was given, checked against the config.
pub fn change_scope(loaded: &Loaded, args: &ChangeScopeArgs) -> Result<Scope> {
    Scope::new(
        &loaded.config,
        args.scope.hosts.clone(),
        args.scope.roles.clone(),
        args.skip_unreachable,
    )
}
