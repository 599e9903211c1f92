//! Pure decisions of resolving: which tag a version names, and what is
//! served when a pin and a followed tag disagree.

use super::ResolveError;
use super::semver::{Range, highest};
use crate::api::Drift;
use crate::oci::Digest;

/// What to follow. A pin always wins; a tag or range beside it is only
/// watched, for drift.
#[derive(Debug, Clone)]
pub(crate) enum Version {
    Tag(String),
    Semver { range: Range, text: String },
}

/// The tag a version names, given the repository's tags (read only for a
/// range).
pub(crate) fn pick_tag(version: &Version, repository: &str, tags: &[String]) -> Result<String, ResolveError> {
    match version {
        Version::Tag(t) => Ok(t.clone()),
        Version::Semver { range, text } => match highest(tags.iter().map(String::as_str), range) {
            Some((t, _)) => Ok(t.to_string()),
            None => Err(ResolveError::NoMatchingTag { repository: repository.to_string(), range: text.clone() }),
        },
    }
}

/// What is to be served, by which tag, and how far a pin has drifted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chosen {
    pub(crate) tag: Option<String>,
    pub(crate) digest: Digest,
    pub(crate) drift: Option<Drift>,
}

/// A pin is served whatever the followed tag says, even when the tag cannot
/// be resolved; without a pin, the followed tag's digest is served and its
/// failure is the reconcile's failure.
pub(crate) fn choose<E>(
    pin: Option<&Digest>,
    followed: Option<Result<(String, Digest), E>>,
) -> Result<Chosen, Option<E>> {
    match (pin, followed) {
        (Some(pin), Some(Ok((tag, latest)))) => {
            let drift = (latest != *pin).then(|| Drift {
                pinned: pin.to_string(),
                latest: latest.to_string(),
                tag: Some(tag.clone()),
            });
            Ok(Chosen { tag: Some(tag), digest: pin.clone(), drift })
        }
        (Some(pin), _) => Ok(Chosen { tag: None, digest: pin.clone(), drift: None }),
        (None, Some(Ok((tag, digest)))) => Ok(Chosen { tag: Some(tag), digest, drift: None }),
        (None, Some(Err(e))) => Err(Some(e)),
        // a plan with neither is refused before it gets here
        (None, None) => Err(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn pins_follows_and_drift() {
        type Followed = Option<Result<(String, Digest), &'static str>>;
        type Want = Result<(Option<&'static str>, Digest, bool), Option<&'static str>>;
        let ok = |t: &str, c| -> Followed { Some(Ok((t.to_string(), d(c)))) };
        let cases: Vec<(Option<Digest>, Followed, Want)> = vec![
            (None, ok("v1", 'a'), Ok((Some("v1"), d('a'), false))),
            (Some(d('a')), ok("v1", 'a'), Ok((Some("v1"), d('a'), false))),
            (Some(d('a')), ok("v1", 'b'), Ok((Some("v1"), d('a'), true))),
            (Some(d('a')), Some(Err("down")), Ok((None, d('a'), false))),
            (Some(d('a')), None, Ok((None, d('a'), false))),
            (None, Some(Err("down")), Err(Some("down"))),
            (None, None, Err(None)),
        ];
        for (pin, followed, want) in cases {
            let got =
                choose(pin.as_ref(), followed.clone()).map(|c| (c.tag.clone(), c.digest.clone(), c.drift.is_some()));
            let want = want.map(|(t, d, drift)| (t.map(str::to_string), d, drift));
            assert_eq!(got, want, "pin {pin:?}, followed {followed:?}");
        }
        let drifted = choose::<()>(Some(&d('a')), Some(Ok(("v1".into(), d('b'))))).unwrap().drift.unwrap();
        assert_eq!(drifted, Drift { pinned: d('a').to_string(), latest: d('b').to_string(), tag: Some("v1".into()) });
    }

    #[test]
    fn tags_from_versions() {
        let tags: Vec<String> = ["1.0.0", "v1.2.0", "2.0.0", "latest"].iter().map(|s| s.to_string()).collect();
        let range = |s: &str| Version::Semver { range: Range::parse(s).unwrap(), text: s.into() };
        assert_eq!(pick_tag(&Version::Tag("x".into()), "r", &[]).unwrap(), "x");
        assert_eq!(pick_tag(&range(">=1.0.0 <2"), "r", &tags).unwrap(), "v1.2.0");
        assert!(matches!(pick_tag(&range("^3"), "r", &tags), Err(ResolveError::NoMatchingTag { .. })));
    }
}
