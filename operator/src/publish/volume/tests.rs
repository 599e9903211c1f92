use std::os::unix::fs::{MetadataExt as _, symlink};
use std::time::{Duration, SystemTime};

use super::*;

fn stage(v: &Volume, files: &[(&str, &str)]) -> PathBuf {
    let dir = v.staging();
    for (name, body) in files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
    dir
}

fn read(v: &Volume, path: &str) -> String {
    fs::read_to_string(v.dir.join(path)).unwrap()
}

fn names(v: &Volume) -> Vec<String> {
    let mut n: Vec<String> =
        fs::read_dir(&v.dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    n.sort();
    n
}

fn volume() -> (tempfile::TempDir, Volume) {
    let t = tempfile::tempdir().unwrap();
    let v = Volume::new(t.path().join("out"));
    v.recover().unwrap();
    (t, v)
}

#[test]
fn a_revision_is_switched_in_whole_with_links_and_a_marker() {
    let (_t, v) = volume();
    let s = stage(&v, &[("app.yaml", "one"), ("conf/a.txt", "A")]);
    let r1 = v.publish(&s, "sha256:aaaaaaaaaaaaaaaaaaaa", "k1").unwrap();
    assert_eq!(r1.name, "..r0000000001-aaaaaaaaaaaa");
    assert_eq!(fs::read_link(v.dir.join(DATA)).unwrap(), Path::new(&r1.name));
    assert_eq!(fs::read_link(v.dir.join("app.yaml")).unwrap(), Path::new("..data/app.yaml"));
    assert_eq!((read(&v, "app.yaml"), read(&v, "conf/a.txt")), ("one".into(), "A".into()));
    let marker: Marker = serde_json::from_str(&read(&v, "..data/..ocisync.json")).unwrap();
    assert_eq!((marker.digest.as_str(), marker.content.as_str()), ("sha256:aaaaaaaaaaaaaaaaaaaa", "k1"));
    let mode = |p: &str| fs::metadata(v.dir.join(p)).unwrap().mode() & 0o777;
    assert_eq!((mode("app.yaml"), mode("conf"), mode("conf/a.txt")), (0o644, 0o755, 0o644));

    // The next version drops conf/ and adds new.txt: links follow.
    let s = stage(&v, &[("app.yaml", "two"), ("new.txt", "N")]);
    let r2 = v.publish(&s, "sha256:bbbbbbbbbbbbbbbbbbbb", "k2").unwrap();
    assert_eq!(v.current().unwrap().name, r2.name);
    assert_eq!(read(&v, "app.yaml"), "two");
    assert!(fs::symlink_metadata(v.dir.join("conf")).is_err(), "a link to a name the revision lacks goes");
    assert_eq!(
        names(&v),
        ["..data", "..r0000000001-aaaaaaaaaaaa", "..r0000000002-bbbbbbbbbbbb", "app.yaml", "new.txt"]
    );
    // The old revision is still whole for a reader that resolved ..data before.
    assert_eq!(read(&v, "..r0000000001-aaaaaaaaaaaa/conf/a.txt"), "A");
}

#[test]
fn old_revisions_go_only_past_keep_and_grace() {
    let (_t, mut v) = volume();
    v.grace = Duration::from_secs(300);
    for (i, d) in ["sha256:1111", "sha256:2222", "sha256:3333"].iter().enumerate() {
        let s = stage(&v, &[("f", d)]);
        v.publish(&s, d, &format!("k{i}")).unwrap();
    }
    assert_eq!(v.revisions().unwrap().len(), 3, "the oldest is kept through its grace period");
    let later = SystemTime::now() + Duration::from_secs(301);
    assert_eq!(v.prune(later).unwrap(), ["..r0000000001-1111"]);
    assert_eq!(v.revisions().unwrap().len(), 2, "keep = 2");
    assert!(v.prune(later + Duration::from_secs(3600)).unwrap().is_empty());
    // A kept revision can become current again without a download.
    assert!(v.restore("k1").unwrap().is_some());
    assert_eq!(read(&v, "f"), "sha256:2222");
    assert!(v.restore("k0").unwrap().is_none());
}

#[test]
fn names_the_layout_reserves_are_refused_before_anything_switches() {
    let (_t, v) = volume();
    let s = stage(&v, &[("a", "1")]);
    v.publish(&s, "sha256:aa", "k").unwrap();
    for bad in ["..data", "..evil", "..ocisync.json"] {
        let s = stage(&v, &[(bad, "x"), ("a", "2")]);
        assert!(matches!(v.publish(&s, "sha256:bb", "k2"), Err(VolumeError::Reserved(n)) if n == bad));
        assert!(!s.exists(), "a refused staging tree is removed");
        assert_eq!(read(&v, "a"), "1");
    }
}

#[test]
fn recovery_removes_what_a_crash_left_and_keeps_what_was_whole() {
    let (_t, v) = volume();
    let s = stage(&v, &[("a", "1")]);
    let r1 = v.publish(&s, "sha256:aa", "k1").unwrap();
    // What a kill at each step leaves: a staged tree, the fetch's own
    // staging, a renamed revision without its marker (impossible by
    // construction, but recovery must not trust it), a temporary link.
    fs::create_dir_all(v.dir.join("..tmp-9-9/x")).unwrap();
    fs::create_dir_all(v.dir.join("...tmp-9-9.ocisync-9-9/root")).unwrap();
    fs::create_dir_all(v.dir.join("..r0000000007-cc")).unwrap();
    symlink("..r0000000007-cc", v.dir.join("..data_tmp")).unwrap();
    // Something the user put beside, and the operator's claim: never touched.
    fs::write(v.dir.join("README.local"), "mine").unwrap();
    fs::write(v.dir.join("..ocisync-owner"), "uid").unwrap();
    v.recover().unwrap();
    assert_eq!(names(&v), ["..data", "..ocisync-owner", &r1.name, "README.local", "a"]);
    // ..data pointing at a revision that is gone: the newest whole one.
    let s = stage(&v, &[("a", "2")]);
    let r2 = v.publish(&s, "sha256:bb", "k2").unwrap();
    fs::remove_dir_all(v.dir.join(&r2.name)).unwrap();
    v.recover().unwrap();
    assert_eq!(v.current().unwrap().name, r1.name);
    assert_eq!(read(&v, "a"), "1");
}
