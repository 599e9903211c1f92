//! The operator killed (SIGKILL, no cleanup) at arbitrary points of its
//! syncs, again and again, then left to run: nothing torn, nothing left in
//! its work dir, every Artifact on the newest version.

use std::time::Duration;

use kube::ResourceExt;

use crate::support::cluster::{ControlPlane, Env, Operator, Spec, entries};
use crate::support::tarball::{Item::*, TAR_GZ, gzip, tar};
use crate::support::*;

const KILLS: usize = 20;
const ARTIFACTS: usize = 6;

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_random_points_it_converges_with_nothing_torn_or_left_behind() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("kills", "kills").await;
    let reg = Distribution::start();
    // layers big enough that a kill often lands mid-download or mid-unpack
    let version = |v: usize| {
        let files: Vec<String> = (0..40).map(|i| format!("f{i}.txt")).collect();
        let body = format!("version {v}\n").repeat(500);
        let items: Vec<_> = files.iter().map(|f| File(f, body.as_bytes())).collect();
        push_layers(&reg.host(), "app:v1", &[(TAR_GZ, gzip(&tar(&items)))])
    };
    let mut digest = version(0);
    for i in 0..ARTIFACTS {
        let spec = Spec::new(&reg.host(), "app").tag("v1").set("select", serde_json::json!({"include": ["f1*.txt"]}));
        e.apply(&format!("app-{i}"), &spec).await;
    }
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = clock.as_nanos() as u64 ^ u64::from(std::process::id());
    let mut rng = seed.max(1);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut work = None;
    for k in 0..KILLS {
        let mut op = Operator::dedicated(cp, "kills", &["--max-per-registry", "8"]);
        work = Some(op.work.clone());
        tokio::time::sleep(Duration::from_millis(200 + next() % 1000)).await;
        op.proc.as_mut().unwrap().kill();
        if k % 4 == 0 {
            digest = version(k + 1);
        }
    }
    let _op = Operator::dedicated(cp, "kills", &[]);
    for i in 0..ARTIFACTS {
        e.synced(&format!("app-{i}"), &digest).await;
    }
    let want = format!("version {}\n", (KILLS - 1) / 4 * 4 + 1).repeat(500);
    for cm in e.config_maps().list(&Default::default()).await.unwrap() {
        assert_eq!(cm.annotations()["ocisync.dev/digest"], digest, "seed {seed}");
        let data = cm.data.unwrap_or_default();
        assert_eq!(data.len(), 11, "f1.txt and f10..f19.txt, nothing else: seed {seed}");
        assert!(data.values().all(|v| *v == want), "every file of the same, newest version: seed {seed}");
    }
    let work = work.unwrap();
    eventually("an empty work dir", 10, async || entries(&work).is_empty().then_some(())).await;
}

/// `ocisync` killed (SIGKILL: `kill -9`, an OOM kill) while a docker
/// credential helper it started hangs: the helper dies with it. It runs in
/// a process group of its own (so that its deadline ends a whole wrapper),
/// which no signal to `ocisync` reaches; the launcher's death signal does.
#[test]
fn a_hanging_credential_helper_dies_with_ocisync() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let started = dir.path().join("started");
    let helper = bin.join("docker-credential-hang");
    std::fs::write(&helper, format!("#!/bin/sh\necho $$ > {}\nexec sleep 3600\n", started.display())).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"credHelpers": {"127.0.0.1:9": "hang"}}"#).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut ocisync = std::process::Command::new(env!("CARGO_BIN_EXE_ocisync"))
        .args(["resolve", "127.0.0.1:9/app:v1", "--docker-config"])
        .arg(dir.path().join("config.json"))
        .env("PATH", path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&started).ok().and_then(|s| s.trim().parse().ok()) {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "the helper never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let running = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    };
    assert!(running(pid), "the helper runs while ocisync waits for it");
    ocisync.kill().unwrap();
    ocisync.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while running(pid) {
        if std::time::Instant::now() > deadline {
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
            panic!("the helper ({pid}) outlived ocisync by 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
