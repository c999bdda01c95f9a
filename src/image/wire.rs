//! Little-endian fields: a bounds-checked parser over a byte slice (the header, the trailer)
//! and the same fields read from or written to a stream (the archive).

use std::io::{self, Read, Write};

/// Reads fields from a slice; every read fails cleanly past the end.
pub struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A read past the end of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short;

impl<'a> Fields<'a> {
    pub fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { bytes, pos: 0 }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short)?;
        let out = self.bytes.get(self.pos..end).ok_or(Short)?;
        self.pos = end;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

pub fn read_array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    r.read_exact(&mut out)?;
    Ok(out)
}

pub fn read_u8(r: &mut impl Read) -> io::Result<u8> {
    Ok(read_array::<1>(r)?[0])
}

pub fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    Ok(u16::from_le_bytes(read_array(r)?))
}

pub fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    Ok(u32::from_le_bytes(read_array(r)?))
}

pub fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    Ok(u64::from_le_bytes(read_array(r)?))
}

pub fn read_i64(r: &mut impl Read) -> io::Result<i64> {
    Ok(i64::from_le_bytes(read_array(r)?))
}

/// Exactly `len` bytes (the caller bounds `len` before calling).
pub fn read_vec(r: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    r.read_exact(&mut out)?;
    Ok(out)
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub fn write_u16(w: &mut impl Write, v: u16) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub fn write_u32(w: &mut impl Write, v: u32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub fn write_u64(w: &mut impl Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_stop_at_the_end() {
        let mut f = Fields::new(&[1, 2, 0, 3, 0, 0, 0]);
        assert_eq!(f.u8(), Ok(1));
        assert_eq!(f.u16(), Ok(2));
        assert_eq!(f.u32(), Ok(3));
        assert_eq!(f.remaining(), 0);
        assert_eq!(f.u8(), Err(Short));
        assert_eq!(f.take(usize::MAX), Err(Short));
    }
}
