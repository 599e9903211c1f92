//! Hostile artifacts against one operator, all at once, beside a healthy
//! one: each is refused with its own stalled reason and writes nothing,
//! the healthy one syncs, and the operator stays up and small.

use std::time::Duration;

use crate::support::cluster::{ControlPlane, Env, Operator, Spec};
use crate::support::tarball::{Item::*, TAR, TAR_GZ, gzip, tar};
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn hostile_artifacts_are_refused_one_by_one_while_the_rest_syncs() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("hostile", "hostile").await;
    let op = Operator::dedicated(cp, "hostile", &[]);
    let reg = Distribution::start();
    let huge_name = vec![b'n'; 32 << 20];
    let huge_pax = vec![b'p'; 1 << 20];
    // (name, layer media type, layer, the reason it must stall with)
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("dotdot", TAR, tar(&[File("../../etc/cron.d/x", b"x")]), "UnsafeContent"),
        ("absolute", TAR, tar(&[File("/etc/passwd", b"x")]), "UnsafeContent"),
        ("link-out", TAR, tar(&[Symlink("etc", "/etc")]), "UnsafeContent"),
        ("link-chain", TAR, tar(&[Symlink("a", "."), Symlink("b", "a/../..")]), "UnsafeContent"),
        ("hardlink-out", TAR, tar(&[HardLink("h", "/etc/shadow")]), "UnsafeContent"),
        ("hardlink-self", TAR, tar(&[File("h", b"1"), HardLink("h", "h")]), "UnsafeContent"),
        ("device", TAR, tar(&[CharDevice("null")]), "UnsafeContent"),
        ("whiteout-up", TAR, tar(&[File("a/.wh..", b"")]), "UnsafeContent"),
        ("long-name", TAR_GZ, gzip(&tar(&[LongName(&huge_name), File("x", b"1")])), "UnsafeContent"),
        ("long-pax", TAR_GZ, gzip(&tar(&[Pax(&[("comment", &huge_pax)]), File("x", b"1")])), "UnsafeContent"),
        ("sparse", TAR, tar(&[Sparse("holes", 1 << 40)]), "UnsafeContent"),
        ("pax-size", TAR, tar(&[Pax(&[("size", b"99999")]), File("x", b"1")]), "Unsupported"),
        ("bomb", TAR_GZ, gzip(&tar(&[Zeros("zeros", 256 << 20)])), "ContentTooLarge"),
        ("not-a-tar", TAR_GZ, b"\x1f\x8b garbage".to_vec(), "Unsupported"),
    ];
    for (name, media_type, layer, _) in &cases {
        push_layers(&reg.host(), &format!("{name}:v1"), &[(media_type, layer.clone())]);
        e.apply(name, &Spec::new(&reg.host(), name).tag("v1")).await;
    }
    let good = push_layers(&reg.host(), "good:v1", &[(TAR, tar(&[File("ok.txt", b"fine")]))]);
    e.apply("good", &Spec::new(&reg.host(), "good").tag("v1")).await;
    e.synced("good", &good).await;
    for (name, _, _, reason) in &cases {
        let (got, message) = e.ready(name, false).await;
        assert_eq!((name, got.as_str()), (name, *reason), "{message}");
        assert_eq!(e.condition(name, "Stalled").await.map(|c| c.0).as_deref(), Some("True"), "{name}");
        assert!(e.config_map(name).await.is_none(), "{name}: nothing published");
    }
    // still up, still small, and nothing of the refused syncs left on disk
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut op = op;
    let proc = op.proc.as_mut().unwrap();
    assert!(proc.alive(), "the operator survived");
    let peak = proc.peak_rss();
    assert!(peak < 64 << 20, "peak RSS {} MiB", peak >> 20);
    assert!(crate::support::cluster::entries(&op.work).is_empty(), "{:?}", crate::support::cluster::entries(&op.work));
}
