//! `docs/doctor-rules.md`, generated from the rule table and the data the
//! rules use, so the documentation cannot drift from the code. A test fails
//! when the file is stale; `UPDATE_DOCS=1` rewrites it.

use super::knowledge::*;
use super::rules::RULES;
use super::storage::{ROOT_BLOCK_FREE, ROOT_WARN_FREE};
use super::system::CLOCK_TOLERANCE_MS;
use super::Severity;

/// The whole of `docs/doctor-rules.md`.
pub fn rules_markdown() -> String {
    let mut md = String::from(
        "# `ballast doctor` rules\n\n\
         <!-- Generated from crates/ballast-core/src/doctor/rules.rs and knowledge.rs by\n     \
         ballast_core::doctor::rules_markdown(). Do not edit: run\n     \
         UPDATE_DOCS=1 cargo test -p ballast-core doctor::docs\n     \
         to regenerate. -->\n\n",
    );
    md.push_str(
        "`ballast doctor` gathers facts from every host (kernel, distribution, \
         `docker info`, `/etc/docker/daemon.json`, space and mount of the Docker \
         root, kernel options, clock) and runs the rules below on them, and the \
         config rules on `ballast.yml`. `ballast doctor --facts` prints the facts \
         as JSON.\n\n\
         - **block**: a known data-loss or crash combination; deploy refuses the host.\n\
         - **warn**: a known way to lose availability, data over time, or security.\n\
         - **info**: worth knowing.\n\n\
         Exit code of `ballast doctor`: **0** nothing above info, **10** \
         warnings only, **5** a host did not answer, **11** at least one host \
         is blocked (the worst wins, in the order 11, 5, 10). Failures before \
         any host is checked (a config error) use ballast's usual exit codes \
         (see README.md).\n\n",
    );
    md.push_str("| Severity | Rule | Looks at | Reason |\n|---|---|---|---|\n");
    for r in RULES {
        md.push_str(&format!(
            "| {} | [`{}`](#{}) | {} | {} |\n",
            r.severity.as_str(),
            r.id,
            r.id,
            r.check.subject(),
            cell(r.reason)
        ));
    }
    md.push_str("\n## Rules\n");
    for severity in [Severity::Block, Severity::Warn, Severity::Info] {
        for r in RULES.iter().filter(|r| r.severity == severity) {
            md.push_str(&format!(
                "\n### {}\n\n**{}**, looks at the {}. {}.\n\n- Fix: {}.\n- Source: {}\n",
                r.id,
                r.severity.as_str(),
                r.check.subject(),
                r.reason,
                r.fix,
                r.source
            ));
        }
    }
    md.push_str(&format!(
        "\n## Data the rules use\n\nLists that change over time were last checked on {CHECKED}.\n"
    ));
    md.push_str("\n### Supported distributions (`distribution-unsupported`)\n\n");
    md.push_str(
        "From docs.docker.com/engine/install/. Rebuilds of RHEL (Rocky, AlmaLinux, \
         Oracle Linux...) count as the RHEL release of the same major version.\n\n",
    );
    for (id, versions) in SUPPORTED_DISTRIBUTIONS {
        md.push_str(&format!("- `{id}`: {}\n", versions.join(", ")));
    }
    md.push_str(&format!(
        "\n### Maintained engines (`engine-unmaintained`)\n\nOldest maintained major \
         version: **{OLDEST_MAINTAINED_ENGINE}** (moby/moby project/BRANCHES-AND-TAGS.md).\n"
    ));
    md.push_str(&format!(
        "\n### Thresholds\n\n- `docker-root-low`: less than {:.0}% of space or inodes \
         free; `docker-root-full`: less than {:.0}%.\n- `clock-skew`: more than {} ms \
         from the median of the other hosts, beyond the measurement's uncertainty.\n",
        ROOT_WARN_FREE * 100.0,
        ROOT_BLOCK_FREE * 100.0,
        CLOCK_TOLERANCE_MS
    ));
    md.push_str(
        "\n### Images that keep data (`stateful-without-volume`)\n\n\
         Besides the paths an image declares with `VOLUME` (read from the image \
         on the host), these images are known to keep data at:\n\n",
    );
    for (image, path) in STATEFUL_IMAGES {
        md.push_str(&format!("- `{image}`: `{path}`\n"));
    }
    md.push_str(&format!(
        "\n### Secret-looking names (`secret-in-clear`)\n\n\
         A name (split on `_`, `-`, `.`) looks like a secret when a part is one of \
         {}, or its last part is one of {}, unless a part is one of {}. A value \
         that embeds a password in a URL (`scheme://user:password@host`) counts too.\n",
        list(SECRET_WORDS),
        list(SECRET_SUFFIXES),
        list(NOT_SECRET_WORDS)
    ));
    md.push_str(&format!(
        "\n### Kernel options (`kernel-options-missing`)\n\nRead from \
         `/boot/config-$(uname -r)` or `/proc/config.gz` when the host has one: {}. \
         Missing essential ones fire the rule: {}.\n",
        list(KERNEL_FLAGS),
        list(ESSENTIAL_KERNEL_FLAGS)
    ));
    md.push_str("\n### Daemon log causes (`engine-down`)\n\nWhen the engine does not answer, doctor reads the tail of dockerd's log (");
    md.push_str(
        &DAEMON_LOGS
            .iter()
            .map(|(p, a)| format!("`{p} {}`", a.join(" ")))
            .collect::<Vec<_>>()
            .join(", "),
    );
    md.push_str(
        ", the first that answers) and names the cause the latest line it recognises gives:\n\n",
    );
    for (text, cause) in DAEMON_LOG_CAUSES {
        md.push_str(&format!("- \"{text}\": {cause}\n"));
    }
    md
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/doctor-rules.md` is generated; this fails when it is stale.
    #[test]
    fn docs_doctor_rules_md_is_up_to_date() {
        crate::testing::check_generated_doc(
            "docs/doctor-rules.md",
            &rules_markdown(),
            "cargo test -p ballast-core doctor::docs",
        );
    }

    #[test]
    fn every_rule_is_documented() {
        let md = rules_markdown();
        for r in RULES {
            assert!(md.contains(&format!("\n### {}\n", r.id)), "{}", r.id);
        }
    }
}
