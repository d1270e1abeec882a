//! The cluster bench in a short form (`qianliyan bench cluster`, every node, camsim and PostgreSQL
//! real processes): three nodes share 24 cameras over one private PostgreSQL; kill -9, SIGSTOP,
//! a node cut off from the database and a rolling restart by SIGTERM each move the cameras to the
//! other nodes, no camera is ever held by two nodes over overlapping time, and every camera is
//! online after each. The assertions are the verdicts the bench writes into its JSON (with a 4 s
//! lease the bounds scale down: online elsewhere within lease + 10 s, leases moved within 3 s of a
//! SIGTERM). About two minutes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

#[test]
fn three_nodes_survive_kill_pause_cut_off_and_a_rolling_restart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = root.join("assets/video/vtest_sub.mp4");
    assert!(
        source.exists(),
        "{} is missing: run `scripts/setup` first",
        source.display()
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster.json");
    let _ = std::fs::remove_file(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_qianliyan"))
        .current_dir(root)
        .args(["bench", "cluster", "--nodes", "3", "--cameras", "24"])
        .args(["--lease", "4s", "--pause", "10s", "--online-timeout", "90s"])
        .arg("--out")
        .arg(&out)
        .arg("--source")
        .arg(&source)
        .env("RUST_LOG", "warn")
        .status()
        .expect("the bench runs");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&out)
            .unwrap_or_else(|e| panic!("no report at {} ({status}): {e}", out.display())),
    )
    .expect("JSON");
    let md = std::fs::read_to_string(out.with_extension("md")).unwrap_or_default();
    println!("{md}");
    assert_eq!(report["double_holdings"], 0, "{md}");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "kill9",
            "sigstop",
            "cut_off",
            "sigterm:node-0",
            "sigterm:node-1",
            "sigterm:node-2"
        ]
    );
    for s in scenarios {
        assert_eq!(s["pass"], true, "{}: {s}\n{md}", s["scenario"]);
        assert!(
            s["cameras"].as_u64().unwrap_or(0) > 0,
            "the node ran no camera: {s}"
        );
    }
    assert_eq!(report["pass"], true, "{md}");
    assert!(status.success(), "{status}");
}
