//! The PostgreSQL accessory image: Debian bookworm minbase with Debian's
//! `postgresql` (15), built offline by the same [`Recipe`] code as the lab
//! host image and cached by its hash. Its entrypoint initializes an empty
//! data directory (the host directory mounted at [`DATA_DIR`]) once, with the
//! superuser password read from `POSTGRES_PASSWORD_FILE` (how `secret_files`
//! delivers it) or `POSTGRES_PASSWORD`, then runs postgres in the foreground
//! as the postgres user.

use ballast_core::{Engine, Result};

use crate::recipe::{ImageConfig, Recipe, RecipeEvent, RecipeFile};

/// Repository part of the image's tag.
pub const IMAGE_REPO: &str = "ballast-lab-postgres";
/// Where the data directory is expected: mount the host directory here.
pub const DATA_DIR: &str = "/var/lib/postgresql/data";
/// The port postgres listens on, on every address.
pub const PORT: u16 = 5432;
/// The superuser the entrypoint creates.
pub const SUPERUSER: &str = "postgres";
/// The postgres user's and group's ids in the image, as Debian's package
/// scripts make them in this recipe (the first system user and group
/// after minbase's): the owner to give the data directory on the host
/// (`directories[].owner`). The image's test checks them.
pub const UID: u32 = 100;
pub const GID: u32 = 102;
/// Where the entrypoint lives in the image.
pub const ENTRYPOINT_PATH: &str = "/usr/local/bin/ballast-postgres-entrypoint";

/// Runs as root (or as postgres, then without the ownership fixes):
/// - an empty data directory is given to postgres and initialized with the
///   superuser password from the file named by POSTGRES_PASSWORD_FILE (or
///   POSTGRES_PASSWORD), scram-sha-256 for every remote connection, trust on
///   the container's own unix socket (reached only through `exec`);
/// - a directory holding something but no database is refused, never
///   written over; a database directory whose owner the host changed
///   (its content still postgres's) is given back to postgres, one whose
///   content belongs to someone else is refused;
/// - postgres is then exec'ed in the foreground as the postgres user, so it
///   gets the stop signal itself: SIGTERM a smart shutdown, SIGINT (the
///   image's stop signal, what `docker stop` sends) a fast one. Arguments go
///   to postgres (e.g. `-c max_connections=200`).
///
/// The password is copied by the shell's own `printf`/`cat` into a 0600 file
/// of a private temporary directory that initdb reads and that is removed
/// before postgres starts: it never appears in a process's arguments.
const ENTRYPOINT: &str = r#"#!/bin/sh
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
umask 077

die() {
  echo "ballast-postgres: $*" >&2
  exit 1
}

if [ "$(id -u)" = 0 ]; then
  as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
  mkdir -p "$PGDATA" /run/postgresql
  chown postgres:postgres /run/postgresql
  chmod 2775 /run/postgresql
else
  as_postgres() { "$@"; }
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "$(ls -A "$PGDATA")" ]; then
    die "$PGDATA holds files but no database (no PG_VERSION): refusing to initialize over them; empty it or mount the right directory"
  fi
  secret=$(mktemp -d)
  trap 'rm -rf "$secret"' EXIT
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    [ -r "$POSTGRES_PASSWORD_FILE" ] || die "POSTGRES_PASSWORD_FILE names $POSTGRES_PASSWORD_FILE, which cannot be read"
    cat "$POSTGRES_PASSWORD_FILE" >"$secret/password"
  elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >"$secret/password"
  else
    die "no superuser password for the new database: set POSTGRES_PASSWORD_FILE (a file holding it) or POSTGRES_PASSWORD"
  fi
  [ -n "$(head -n 1 "$secret/password")" ] || die "the superuser password is empty"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres:postgres "$secret"
    if [ "$(stat -c %U "$PGDATA")" != postgres ]; then
      chown postgres:postgres "$PGDATA"
    fi
  fi
  chmod 0700 "$PGDATA"
  echo "ballast-postgres: initializing a new database in $PGDATA" >&2
  as_postgres initdb --username=postgres --pwfile="$secret/password" \
    --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C >/dev/null
  rm -rf "$secret"
  trap - EXIT
  printf '%s\n' \
    '# Added by ballast-postgres: every remote client with a password.' \
    'host all all 0.0.0.0/0 scram-sha-256' \
    'host all all ::/0 scram-sha-256' >>"$PGDATA/pg_hba.conf"
elif [ "$(id -u)" = 0 ] && [ "$(stat -c %U "$PGDATA")" != postgres ]; then
  if [ "$(stat -c %U "$PGDATA/PG_VERSION")" != postgres ]; then
    die "$PGDATA holds a database owned by $(stat -c %u:%g "$PGDATA/PG_VERSION"), not by postgres ($(id -u postgres):$(id -g postgres)): chown it on the host"
  fi
  # Only the directory itself changed owner (the host set another one):
  # postgres runs only in a directory it owns.
  chown postgres:postgres "$PGDATA"
fi

unset POSTGRES_PASSWORD POSTGRES_PASSWORD_FILE
if [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -c 'listen_addresses=*' "$@"
fi
exec postgres -c 'listen_addresses=*' "$@"
"#;

/// PostgreSQL 15 from Debian bookworm. The cluster the package scripts make
/// (`15/main`) is dropped: the database lives in the mounted directory.
/// So are documentation, translations and the optional JIT provider with
/// LLVM (postgres runs without JIT when its provider is missing): they
/// halve the image that travels to hosts.
pub const RECIPE: Recipe = Recipe {
    repo: IMAGE_REPO,
    suite: "bookworm",
    variant: "minbase",
    packages: &["postgresql"],
    files: &[RecipeFile {
        path: ENTRYPOINT_PATH,
        body: ENTRYPOINT,
        mode: 0o755,
    }],
    prune: &[
        ("var/lib/postgresql", "15"),
        ("etc/postgresql", "15"),
        ("usr/share", "doc"),
        ("usr/share", "man"),
        ("usr/share", "locale"),
        ("usr/share", "i18n"),
        ("usr/lib/postgresql/15/lib", "llvmjit"),
        ("usr/lib/postgresql/15/lib", "bitcode"),
        ("usr/lib/x86_64-linux-gnu", "libLLVM"),
        ("usr/lib/x86_64-linux-gnu", "libz3"),
    ],
    config: ImageConfig {
        entrypoint: &[ENTRYPOINT_PATH],
        cmd: &[],
        env: &[
            (
                "PATH",
                "/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("PGDATA", DATA_DIR),
            ("LANG", "C.UTF-8"),
        ],
        expose: &[PORT],
        user: None,
        stop_signal: Some("SIGINT"),
    },
    revision: 1,
};

/// The image's tag for the current recipe: `ballast-lab-postgres:<hash>`.
pub fn image_tag() -> String {
    RECIPE.tag()
}

/// Makes sure the PostgreSQL image exists on `engine`, building it if
/// needed, and returns its tag.
pub async fn ensure(
    engine: &Engine,
    on_event: &mut (dyn FnMut(RecipeEvent) + Send),
) -> Result<String> {
    RECIPE.ensure(engine, on_event).await
}
