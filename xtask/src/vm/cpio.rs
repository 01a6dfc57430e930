//! A minimal `newc` cpio writer (the initramfs format the kernel unpacks).

use std::io::{self, Write};

pub struct Cpio<W: Write> {
    out: W,
    ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Cpio { out, ino: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        pad(&mut self.out, 110 + name.len() + 1)?;
        self.out.write_all(data)?;
        pad(&mut self.out, data.len())
    }

    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, S_IFDIR | 0o755, &[], (0, 0))
    }

    pub fn file(&mut self, name: &str, data: &[u8], executable: bool) -> io::Result<()> {
        let perm = if executable { 0o755 } else { 0o644 };
        self.entry(name, S_IFREG | perm, data, (0, 0))
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | 0o600, &[], (major, minor))
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, &[], (0, 0))?;
        Ok(self.out)
    }
}

fn pad(out: &mut impl Write, len: usize) -> io::Result<()> {
    let rem = len % 4;
    if rem != 0 {
        out.write_all(&[0u8; 4][..4 - rem])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_four_byte_aligned_and_terminated() {
        let mut c = Cpio::new(Vec::new());
        c.dir("bin").expect("dir");
        c.file("/bin/x", b"abc", true).expect("file");
        let out = c.finish().expect("finish");
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("bin/x\0"));
        assert!(text.contains("TRAILER!!!\0"));
    }
}
