//! What zstd windows may cost the process. A frame's window is memory its
//! decoder holds; ocisync reads windows up to 128 MiB (what producers
//! write: skopeo's zstd:chunked asks for 32 MiB), so without a bound a few
//! hostile layers decoded at once could ask for gigabytes. Frames up to
//! 8 MiB decode freely, as before; a layer with a larger frame first takes
//! one of `BIG_DECODERS` permits, process-wide, and holds it to its end.
//!
//! The windows are read from the frame headers as the bytes pass, before
//! the decoder sees them: every zstd:chunked layer has many frames, and the
//! first of skopeo's are small while a later one asks for 32 MiB.

use std::io::{self, Read};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The window any layer may use without a permit (the bound before
/// ocisync read larger ones).
pub(crate) const FREE_WINDOW: u64 = 8 << 20;
/// The largest window read at all: zstd's own default ceiling (what
/// `zstd -d` takes without `--long`). The decoder is held to it too.
pub(crate) const MAX_WINDOW_LOG: u32 = 27;
/// Layers decoding with a window over `FREE_WINDOW` at once, process-wide:
/// at most 2 × 128 MiB of windows whatever is pulled or synced.
pub(crate) const BIG_DECODERS: usize = 2;

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

struct Pool {
    held: Mutex<usize>,
    freed: Condvar,
}

static POOL: Pool = Pool { held: Mutex::new(0), freed: Condvar::new() };

/// One of the `BIG_DECODERS` places; given back when dropped.
pub(crate) struct Permit(());

impl Permit {
    /// Waits for a place. The holders are decoding and give theirs back
    /// when their layer ends, fails or its download is dropped.
    fn acquire() -> Permit {
        let mut held = POOL.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held >= BIG_DECODERS {
            held = POOL.freed.wait_timeout(held, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner()).0;
        }
        *held += 1;
        Permit(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = POOL.held.lock().unwrap_or_else(|p| p.into_inner());
        *held = held.saturating_sub(1);
        POOL.freed.notify_one();
    }
}

/// Where the walk is in the stream's structure (RFC 8878 §3.1).
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    /// Collecting a frame's 4-byte magic.
    Magic,
    /// A skippable frame's 4-byte length.
    SkipLength,
    /// A zstd frame's descriptor byte.
    Descriptor,
    /// The rest of its header: `n` bytes with this descriptor.
    Header { descriptor: u8, n: usize },
    /// A block's 3-byte header; `checksum` after the last block.
    Block { checksum: bool },
    /// Bytes passed over, then `next`.
    Skip { n: u64, next: AfterSkip },
    /// Not a zstd frame: the decoder stops here with its own error, and
    /// no frame after this point reaches it.
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AfterSkip {
    Magic,
    Block { checksum: bool },
}

/// Passes a zstd stream through, taking a permit before the first frame
/// whose window is over `FREE_WINDOW` reaches the reader, and refusing a
/// frame whose window is over `MAX_WINDOW_LOG` before it does.
pub(crate) struct Frames<R> {
    inner: R,
    at: At,
    field: Vec<u8>,
    permit: Option<Permit>,
}

impl<R: Read> Frames<R> {
    pub(crate) fn new(inner: R) -> Self {
        Frames { inner, at: At::Magic, field: Vec::with_capacity(16), permit: None }
    }

    /// Follow the structure over `bytes`; the largest window of a frame
    /// header met in them.
    fn walk(&mut self, mut bytes: &[u8]) -> u64 {
        let mut largest = 0;
        while !bytes.is_empty() && self.at != At::Lost {
            if let At::Skip { n, next } = self.at {
                let take = n.min(bytes.len() as u64);
                bytes = &bytes[take as usize..];
                self.at = if take == n {
                    match next {
                        AfterSkip::Magic => At::Magic,
                        AfterSkip::Block { checksum } => At::Block { checksum },
                    }
                } else {
                    At::Skip { n: n - take, next }
                };
                continue;
            }
            let want = match self.at {
                At::Magic | At::SkipLength => 4,
                At::Descriptor => 1,
                At::Header { n, .. } => n,
                At::Block { .. } => 3,
                At::Skip { .. } | At::Lost => unreachable!("handled above"),
            };
            let take = (want - self.field.len()).min(bytes.len());
            self.field.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.field.len() < want {
                break;
            }
            let field = std::mem::take(&mut self.field);
            self.at = match self.at {
                At::Magic => {
                    let magic = u32::from_le_bytes([field[0], field[1], field[2], field[3]]);
                    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                        At::SkipLength
                    } else if magic == ZSTD_MAGIC {
                        At::Descriptor
                    } else {
                        At::Lost
                    }
                }
                At::SkipLength => {
                    let n = u32::from_le_bytes([field[0], field[1], field[2], field[3]]);
                    At::Skip { n: u64::from(n), next: AfterSkip::Magic }
                }
                At::Descriptor => {
                    let d = field[0];
                    let single = d & 0x20 != 0;
                    let dictionary = [0, 1, 2, 4][usize::from(d & 3)];
                    let content_size = [usize::from(single), 2, 4, 8][usize::from(d >> 6)];
                    let n = usize::from(!single) + dictionary + content_size;
                    if n == 0 { At::Block { checksum: d & 4 != 0 } } else { At::Header { descriptor: d, n } }
                }
                At::Header { descriptor, .. } => {
                    largest = largest.max(window(descriptor, &field));
                    At::Block { checksum: descriptor & 4 != 0 }
                }
                At::Block { checksum } => {
                    let h = u32::from(field[0]) | u32::from(field[1]) << 8 | u32::from(field[2]) << 16;
                    let (last, kind, size) = (h & 1 != 0, (h >> 1) & 3, u64::from(h >> 3));
                    let n = match kind {
                        0 | 2 => size,
                        1 => 1,
                        _ => {
                            self.at = At::Lost;
                            continue;
                        }
                    };
                    let next = match (last, checksum) {
                        (false, _) => AfterSkip::Block { checksum },
                        (true, true) => {
                            // the 4-byte checksum follows the last block
                            self.at = At::Skip { n: n + 4, next: AfterSkip::Magic };
                            continue;
                        }
                        (true, false) => AfterSkip::Magic,
                    };
                    At::Skip { n, next }
                }
                At::Skip { .. } | At::Lost => unreachable!("handled above"),
            };
        }
        largest
    }
}

/// A frame's window from its descriptor and the header bytes after it:
/// the window descriptor, or the content size of a single-segment frame.
fn window(descriptor: u8, rest: &[u8]) -> u64 {
    if descriptor & 0x20 == 0 {
        let wd = rest[0];
        let base = 1u64 << (10 + u32::from(wd >> 3));
        return base + (base / 8) * u64::from(wd & 7);
    }
    let dictionary = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let fcs = &rest[dictionary..];
    let mut b = [0u8; 8];
    b[..fcs.len()].copy_from_slice(fcs);
    let size = u64::from_le_bytes(b);
    if fcs.len() == 2 { size + 256 } else { size }
}

impl<R: Read> Read for Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let window = self.walk(&buf[..n]);
        if window > 1 << MAX_WINDOW_LOG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a zstd frame asks for a window of {} MiB, more memory than ocisync gives a layer (128 MiB: \
                     zstd --long=27; this one was written with --long=28 or more)",
                    window >> 20
                ),
            ));
        }
        if window > FREE_WINDOW && self.permit.is_none() {
            self.permit = Some(Permit::acquire());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/unpack/toc/testdata");
        std::fs::read(dir.join(format!("{name}.blob"))).unwrap()
    }

    /// The largest window, walking `bytes` in pieces of `step`.
    fn largest(bytes: &[u8], step: usize) -> u64 {
        let mut f = Frames::new(&[][..]);
        let mut max = 0;
        for piece in bytes.chunks(step) {
            max = max.max(f.walk(piece));
        }
        assert!(matches!(f.at, At::Magic | At::Lost) && f.field.is_empty(), "ends between frames: {:?}", f.at);
        max
    }

    #[test]
    fn finds_every_frames_window_in_what_producers_write() {
        for step in [1, 3, 7, 4096, usize::MAX] {
            // skopeo 1.9's zstd:chunked: small single-segment frames, then 32 MiB
            assert_eq!(largest(&fixture("skopeo-zstd-chunked"), step), 32 << 20, "step {step}");
            assert_eq!(largest(&fixture("skopeo-zstd"), step), 8 << 20);
            assert!(largest(&fixture("estargz-zstd-chunked"), step) <= FREE_WINDOW);
        }
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27)).unwrap();
        e.include_checksum(true).unwrap();
        std::io::Write::write_all(&mut e, b"some bytes").unwrap();
        let z = e.finish().unwrap();
        assert_eq!(largest(&z, 1), 128 << 20);
        // what is not a frame ends the walk; the decoder refuses it itself
        assert_eq!(largest(&[&z[..], b"trailing garbage"].concat(), 5), 128 << 20);
        assert_eq!(largest(b"not zstd at all", 3), 0);
    }

    #[test]
    fn windows_past_128_mib_are_refused_before_the_decoder_sees_them() {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(28)).unwrap();
        std::io::Write::write_all(&mut e, b"x").unwrap();
        let z = e.finish().unwrap();
        let err = Frames::new(&z[..]).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("window of 256 MiB"), "{err}");
    }

    #[test]
    fn big_windows_wait_for_a_permit() {
        let held: Vec<Permit> = (0..BIG_DECODERS).map(|_| Permit::acquire()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _p = Permit::acquire();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "waits while all are held");
        drop(held);
        rx.recv_timeout(Duration::from_secs(5)).expect("gets one when given back");
        waiter.join().unwrap();
    }
}
