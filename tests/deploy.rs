//! deploy/ renders and validates offline: `kubectl kustomize` (kubectl 1.37 from PyPI, installed by
//! scripts/setup into assets/tools/) renders each overlay, and `kubernetes-validate --strict`
//! checks every resource against the Kubernetes 1.33 schemas (no cluster can run here). The
//! ConfigMap's config.toml is the service's own: it loads with the secrets the Secrets would give.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let p = root().join("assets/tools").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/setup` first",
        p.display()
    );
    p
}

fn render(overlay: &str) -> String {
    let out = Command::new(tool("kubectl"))
        .arg("kustomize")
        .arg(root().join("deploy/overlays").join(overlay))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn every_overlay_renders_and_passes_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    for overlay in ["cpu", "gpu", "gb28181"] {
        let yaml = render(overlay);
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &yaml).unwrap();
        let out = Command::new(tool("kubernetes-validate"))
            .args(["--strict", "-k", "1.33.0"])
            .arg(&file)
            .output()
            .expect("kubernetes-validate runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{overlay}: {report}");
        for kind in [
            "statefulset/qianliyan",
            "service/qianliyan",
            "service/qianliyan-nodes",
            "poddisruptionbudget/qianliyan",
            "persistentvolumeclaim/qianliyan-media",
            "configmap/qianliyan-config",
        ] {
            assert!(
                report.contains(&format!("passed for resource {kind}")),
                "{overlay}: {kind} not validated:\n{report}"
            );
        }
        // What the nodes rely on: the pod name as node id, the database URL from a Secret,
        // readiness on /readyz, a grace period longer than a hand-over.
        for needed in [
            "fieldPath: metadata.name",
            "name: qianliyan-database",
            "path: /readyz",
            "terminationGracePeriodSeconds: 60",
            "ReadWriteMany",
        ] {
            assert!(yaml.contains(needed), "{overlay}: no {needed:?} in\n{yaml}");
        }
        if overlay == "gb28181" {
            // The SIP address devices register to; each node on its host's network (RTP comes
            // to the node's address), one per host; the config that adds [gb28181].
            assert!(
                report.contains("passed for resource service/qianliyan-sip"),
                "{report}"
            );
            for needed in [
                "hostNetwork: true",
                "sessionAffinity: ClientIP",
                "name: qianliyan-gb28181",
                "/etc/qianliyan/gb28181.toml",
                "topologyKey: kubernetes.io/hostname",
                "gb28181.toml: |",
                "config.toml: |",
            ] {
                assert!(yaml.contains(needed), "gb28181: no {needed:?} in\n{yaml}");
            }
        }
        if overlay == "gpu" {
            assert!(yaml.contains("nvidia.com/gpu: 1"), "{yaml}");
        }
    }
    // A broken manifest fails the same check (the validator is not a no-op).
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: x\nspec:\n  replicas: three\n",
    )
    .unwrap();
    let out = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "-k", "1.33.0"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a StatefulSet with replicas: three passed"
    );
}

/// The secrets the manifests' Secrets give, and the ConfigMap's files as the pods see them: in one
/// directory (an overlay's file there, the base's config.toml beside it).
struct Env;

impl qianliyan::config::Environment for Env {
    fn var(&self, name: &str) -> Result<String, std::env::VarError> {
        match name {
            "QLY_DATABASE_URL" => Ok("postgres://qianliyan:pw@db:5432/qianliyan".into()),
            "QLY_ADMIN_PASSWORD" => Ok("a-long-admin-password".into()),
            "QLY_GB_PASSWORD" => Ok("a-gb-registration-password".into()),
            _ => Err(std::env::VarError::NotPresent),
        }
    }
    fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        if path.file_name().is_some_and(|n| n == "config.toml") {
            return std::fs::read(root().join("deploy/base/config.toml"));
        }
        std::fs::read(path)
    }
}

/// With GB/T 28181: the overlay's gb28181.toml includes the base configuration and adds the
/// section, which loads on PostgreSQL (a cluster).
#[test]
fn the_gb28181_overlays_config_includes_the_base_and_loads() {
    let path = root().join("deploy/overlays/gb28181/gb28181.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let settings = qianliyan::settings::parse_str_with(&text, path.parent().unwrap(), &Env)
        .unwrap_or_else(|e| panic!("deploy/overlays/gb28181/gb28181.toml: {e}"));
    assert!(matches!(
        settings.config.node.database,
        qianliyan::config::Database::Postgres { .. }
    ));
    let gb = settings.gb28181.expect("[gb28181]");
    assert_eq!(gb.sip_id, "62092100002000000001");
    assert_eq!(settings.config.web.listen.port(), 8080, "the base's [web]");
}

#[test]
fn the_configmaps_config_loads_with_the_secrets_given() {
    let path = root().join("deploy/base/config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let settings = qianliyan::settings::parse_str_with(&text, path.parent().unwrap(), &Env)
        .unwrap_or_else(|e| panic!("deploy/base/config.toml: {e}"));
    assert!(matches!(
        settings.config.node.database,
        qianliyan::config::Database::Postgres { .. }
    ));
    assert_eq!(
        settings.config.node.media_dir,
        Path::new("/srv/qianliyan-media")
    );
    assert_eq!(settings.cluster.node_id, None, "the pod name gives the id");
}
