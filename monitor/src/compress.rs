//! Compressed trace files: `--output x.jsonl.gz` / `x.jsonl.zst` write them,
//! `monitor analyze` reads them transparently (by their magic bytes, not
//! their name).
//!
//! A compressed trace is a sequence of independent gzip members or zstd
//! frames, one per flush of the writer, each holding whole lines. A reader
//! decodes them back to back (`zcat` and `zstdcat` do the same), and a file
//! cut by a crash or a full disk loses at most its last member: the
//! writer truncates a member it could not write whole, as it does a line.
//!
//! Both codecs are pure Rust (flate2 on miniz_oxide, ruzstd), so the static
//! musl release build needs no C toolchain.

use std::{
    io::{self, BufRead, Read},
    path::Path,
};

use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// How a trace file's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Plain,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Codec {
    /// The codec a new file gets from its name (`.gz`, `.zst`).
    pub fn for_path(path: &Path) -> Codec {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Codec::Gzip,
            Some("zst") => Codec::Zstd,
            _ => Codec::Plain,
        }
    }

    /// The codec of existing bytes, from their magic number.
    pub fn sniff(head: &[u8]) -> Codec {
        if head.starts_with(&GZIP_MAGIC) {
            Codec::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Codec::Zstd
        } else {
            Codec::Plain
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Plain => "plain",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// One self-contained member (gzip) or frame (zstd) holding `data`;
    /// `data` itself for [`Codec::Plain`].
    pub fn encode(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::Plain => data.to_vec(),
            Codec::Gzip => {
                use std::io::Write as _;
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 4),
                    flate2::Compression::fast(),
                );
                // Writing into a Vec cannot fail.
                let _ = e.write_all(data);
                e.finish().unwrap_or_default()
            }
            Codec::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        }
    }
}

/// Reads a trace file's lines whatever its codec: the decoded stream of a
/// compressed file, the bytes of a plain one.
pub fn reader<R: BufRead + 'static>(mut inner: R) -> io::Result<(Codec, Box<dyn BufRead>)> {
    let codec = Codec::sniff(inner.fill_buf()?);
    let r: Box<dyn BufRead> = match codec {
        Codec::Plain => Box::new(inner),
        Codec::Gzip => Box::new(io::BufReader::with_capacity(
            64 * 1024,
            Torn::new(flate2::bufread::MultiGzDecoder::new(inner), codec),
        )),
        Codec::Zstd => Box::new(io::BufReader::with_capacity(
            64 * 1024,
            Torn::new(ZstdFrames::new(inner), codec),
        )),
    };
    Ok((codec, r))
}

/// Turns a decoder's error into one that says what happened: a compressed
/// file that ends inside a member is torn (its writer stopped mid-write),
/// anything else is corrupt.
struct Torn<R> {
    inner: R,
    codec: Codec,
}

impl<R> Torn<R> {
    fn new(inner: R, codec: Codec) -> Torn<R> {
        Torn { inner, codec }
    }
}

impl<R: Read> Read for Torn<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let what = self.codec.name();
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    e.kind(),
                    format!(
                        "the {what} stream ends in the middle of a compressed block (a torn file: \
                         its writer stopped mid-write); the lines before it were read"
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("corrupt {what} data: {e}"))
            }
        })
    }
}

/// zstd frames back to back (ruzstd's streaming decoder reads one).
struct ZstdFrames<R> {
    src: R,
    dec: FrameDecoder,
    /// A frame is being decoded.
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(src: R) -> ZstdFrames<R> {
        ZstdFrames {
            src,
            dec: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

fn zstd_error(e: impl std::fmt::Display) -> io::Error {
    let text = e.to_string();
    // ruzstd reports a short read as a failed read of the next part.
    let kind = if text.contains("failed to fill whole buffer") || text.contains("UnexpectedEof") {
        io::ErrorKind::UnexpectedEof
    } else {
        io::ErrorKind::InvalidData
    };
    io::Error::new(kind, text)
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                self.dec.reset(&mut self.src).map_err(zstd_error)?;
                self.in_frame = true;
            }
            while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                let want = buf.len() - self.dec.can_collect();
                self.dec
                    .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(want))
                    .map_err(zstd_error)?;
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() {
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: Vec<u8>) -> io::Result<String> {
        let (_, mut r) = reader(io::Cursor::new(bytes))?;
        let mut s = String::new();
        r.read_to_string(&mut s)?;
        Ok(s)
    }

    /// Members written one flush at a time read back as one stream, for
    /// both codecs; a file cut inside its last member says it is torn
    /// after the lines before it.
    #[test]
    fn members_concatenate_and_a_torn_member_is_named() {
        for codec in [Codec::Gzip, Codec::Zstd] {
            let a = "{\"type\":\"header\"}\n".repeat(50);
            let b = "{\"type\":\"event\",\"x\":1}\n".repeat(2000);
            let mut file = codec.encode(a.as_bytes());
            let first = file.len();
            file.extend(codec.encode(b.as_bytes()));
            assert_eq!(Codec::sniff(&file), codec);
            assert_eq!(decode(file.clone()).expect("decodes"), format!("{a}{b}"));
            file.truncate(first + (file.len() - first) / 2);
            let (_, mut r) = reader(io::Cursor::new(file)).expect("opens");
            let mut got = Vec::new();
            let err = r.read_to_end(&mut got).expect_err("torn");
            assert!(got.starts_with(a.as_bytes()), "{codec:?}");
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{codec:?}: {err}");
            assert!(err.to_string().contains("torn file"), "{err}");
        }
        assert_eq!(decode(b"{}\n".to_vec()).expect("plain"), "{}\n");
    }
}
