//! Hand-made tar layers, including ones no well-behaved tool writes: the
//! headers are filled byte by byte, because `tar::Builder` refuses `..`.
#![allow(dead_code)]

use std::io::Write;

pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const TAR_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const TAR_ZST: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub enum Item<'a> {
    File(&'a str, &'a [u8]),
    Exec(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    CharDevice(&'a str),
    /// A file of `n` zero bytes, written without holding it in memory.
    Zeros(&'a str, u64),
    /// A GNU long-name entry (type `L`) of these bytes, naming the next entry.
    LongName(&'a [u8]),
    /// A PAX extended header (type `x`) with these `key=value` records.
    Pax(&'a [(&'a str, &'a [u8])]),
    /// A GNU sparse entry (type `S`) claiming `n` bytes.
    Sparse(&'a str, u64),
}

pub fn tar(items: &[Item]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        use tar::EntryType as T;
        let (path, kind, data, link, mode): (&str, T, &[u8], &str, u32) = match item {
            Item::File(p, d) => (p, T::Regular, d, "", 0o644),
            Item::Exec(p, d) => (p, T::Regular, d, "", 0o755),
            Item::Dir(p) => (p, T::Directory, b"", "", 0o755),
            Item::Symlink(p, t) => (p, T::Symlink, b"", t, 0o777),
            Item::HardLink(p, t) => (p, T::Link, b"", t, 0o644),
            Item::CharDevice(p) => (p, T::Char, b"", "", 0o644),
            Item::Zeros(p, n) => {
                let h = header(p, T::Regular, *n, "", 0o644);
                b.append(&h, std::io::repeat(0).take_n(*n)).unwrap();
                continue;
            }
            Item::LongName(name) => {
                let h = header("././@LongLink", T::GNULongName, name.len() as u64, "", 0o644);
                b.append(&h, *name).unwrap();
                continue;
            }
            Item::Pax(records) => {
                let mut data = Vec::new();
                for (k, v) in *records {
                    // "<len> <key>=<value>\n", where len counts itself
                    let body = [format!(" {k}=").as_bytes(), v, b"\n"].concat();
                    let mut len = body.len() + 1;
                    while (len.to_string().len() + body.len()) != len {
                        len += 1;
                    }
                    data.extend(len.to_string().as_bytes());
                    data.extend(&body);
                }
                let h = header("pax", T::XHeader, data.len() as u64, "", 0o644);
                b.append(&h, &data[..]).unwrap();
                continue;
            }
            Item::Sparse(p, n) => {
                let mut h = header(p, T::GNUSparse, 0, "", 0o644);
                h.as_gnu_mut().unwrap().set_real_size(*n);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
                continue;
            }
        };
        let h = header(path, kind, data.len() as u64, link, mode);
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn header(path: &str, kind: tar::EntryType, size: u64, link: &str, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let g = h.as_gnu_mut().unwrap();
    g.name[..path.len()].copy_from_slice(path.as_bytes());
    g.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    h
}

trait TakeN: std::io::Read + Sized {
    fn take_n(self, n: u64) -> std::io::Take<Self> {
        std::io::Read::take(self, n)
    }
}
impl<R: std::io::Read> TakeN for R {}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}
