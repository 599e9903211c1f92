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
