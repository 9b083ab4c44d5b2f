//! A tiny binary codec for store values: fixed-width big-endian integers and u32-length-prefixed
//! byte strings, each record starting with its own version byte.

pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn new(version: u8) -> Self {
        Writer(vec![version])
    }

    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn bytes(mut self, b: &[u8]) -> Self {
        // Store values are bounded far below 4 GiB by the RPC size limits.
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(&b[..len as usize]);
        self
    }

    pub(crate) fn list(mut self, items: &[Vec<u8>]) -> Self {
        let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&n.to_be_bytes());
        for it in items.iter().take(n as usize) {
            self = self.bytes(it);
        }
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str, version: u8) -> Result<Self, crate::StoreError> {
        let mut r = Reader { buf, what };
        let v = r.take(1)?[0];
        if v != version {
            return Err(r.corrupt(format!("record version {v}, expected {version}")));
        }
        Ok(r)
    }

    /// A reader of a record in any of the `versions`, and the version it is in.
    pub(crate) fn versioned(
        buf: &'a [u8],
        what: &'static str,
        versions: std::ops::RangeInclusive<u8>,
    ) -> Result<(Self, u8), crate::StoreError> {
        let mut r = Reader { buf, what };
        let v = r.take(1)?[0];
        if !versions.contains(&v) {
            return Err(r.corrupt(format!("record version {v}, expected {versions:?}")));
        }
        Ok((r, v))
    }

    fn corrupt(&self, detail: String) -> crate::StoreError {
        crate::StoreError::Corrupt { what: self.what, detail }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], crate::StoreError> {
        if self.buf.len() < n {
            return Err(self.corrupt(format!("truncated: need {n} bytes, have {}", self.buf.len())));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], crate::StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, crate::StoreError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, crate::StoreError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, crate::StoreError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, crate::StoreError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    pub(crate) fn list(&mut self) -> Result<Vec<Vec<u8>>, crate::StoreError> {
        let n = self.u32()? as usize;
        // Each item costs at least its 4-byte length: a corrupt count cannot make us allocate
        // more than the record could hold.
        if n > self.buf.len() / 4 {
            return Err(self.corrupt(format!("list of {n} items in {} bytes", self.buf.len())));
        }
        (0..n).map(|_| self.bytes()).collect()
    }

    pub(crate) fn end(self) -> Result<(), crate::StoreError> {
        if self.buf.is_empty() { Ok(()) } else { Err(self.corrupt(format!("{} trailing bytes", self.buf.len()))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let rec = Writer::new(1).u64(7).i64(-3).bytes(b"abc").list(&[b"x".to_vec(), vec![]]).finish();
        let mut r = Reader::new(&rec, "t", 1).unwrap();
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.i64().unwrap(), -3);
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert_eq!(r.list().unwrap(), vec![b"x".to_vec(), vec![]]);
        r.end().unwrap();

        assert!(Reader::new(&rec, "t", 2).is_err());
        let mut r = Reader::new(&rec[..10], "t", 1).unwrap();
        assert!(r.u64().is_ok());
        assert!(r.i64().is_err());
        let mut huge = Writer::new(1).finish();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Reader::new(&huge, "t", 1).unwrap().list().is_err());
    }
}
