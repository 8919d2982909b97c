//! A GGUF sanity check run before a file reaches llama.cpp.
//!
//! llama.cpp asserts (aborting the process) on some malformed files. Reading the header here
//! first turns a wrong magic, an unknown version, a corrupt key/value section or a truncated
//! tensor-data section into a typed error instead.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
/// Upper bounds that no valid model comes near; they stop a corrupt length from allocating.
const MAX_STRING: u64 = 16 << 20;
const MAX_COUNT: u64 = 1 << 32;
const MAX_DIMS: u32 = 8;

/// Facts read from a GGUF header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufInfo {
    /// Format version (2 or 3).
    pub version: u32,
    /// Number of tensors.
    pub tensors: u64,
    /// Number of metadata entries.
    pub metadata: u64,
    /// Bytes the header and tensor data need; the file is at least this long.
    pub required_size: u64,
    /// `general.architecture`, when present.
    pub architecture: Option<String>,
}

/// Read the header of `path` and check that the file holds all of its tensor data.
pub fn check_gguf(path: &Path) -> Result<GgufInfo> {
    let fail = |reason: String| Error::InvalidGguf {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let file_size = file
        .metadata()
        .map_err(|e| fail(format!("cannot stat: {e}")))?
        .len();
    let mut r = Reader {
        inner: BufReader::new(file),
        file_size,
    };
    let info = r.read_header().map_err(fail)?;
    if info.required_size > file_size {
        return Err(fail(format!(
            "truncated: tensor data needs {} bytes, the file has {file_size}",
            info.required_size
        )));
    }
    Ok(info)
}

struct Reader {
    inner: BufReader<File>,
    file_size: u64,
}

type R<T> = std::result::Result<T, String>;

impl Reader {
    fn bytes<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| "unexpected end of file in the header".to_string())?;
        Ok(buf)
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn pos(&mut self) -> R<u64> {
        self.inner.stream_position().map_err(|e| e.to_string())
    }
    fn skip(&mut self, n: u64) -> R<()> {
        let pos = self.pos()?;
        if pos.saturating_add(n) > self.file_size {
            return Err("unexpected end of file in the header".into());
        }
        let n = i64::try_from(n).map_err(|_| "length overflow".to_string())?;
        self.inner.seek_relative(n).map_err(|e| e.to_string())
    }
    fn string(&mut self) -> R<String> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(format!(
                "string of {len} bytes in the header is implausible"
            ));
        }
        let pos = self.pos()?;
        if pos.saturating_add(len) > self.file_size {
            return Err("unexpected end of file in the header".into());
        }
        let mut buf = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| "unexpected end of file".to_string())?;
        String::from_utf8(buf).map_err(|_| "a header string is not UTF-8".to_string())
    }
    fn skip_string(&mut self) -> R<()> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(format!(
                "string of {len} bytes in the header is implausible"
            ));
        }
        self.skip(len)
    }

    /// Skip one metadata value of type `ty`; returns it as a string when it is one.
    fn value(&mut self, ty: u32, want_string: bool) -> R<Option<String>> {
        match ty {
            0 | 1 | 7 => self.skip(1)?,
            2 | 3 => self.skip(2)?,
            4..=6 => self.skip(4)?,
            10..=12 => self.skip(8)?,
            8 if want_string => return self.string().map(Some),
            8 => self.skip_string()?,
            9 => {
                let elem = self.u32()?;
                let count = self.u64()?;
                if count > MAX_COUNT {
                    return Err(format!("array of {count} items is implausible"));
                }
                match elem {
                    8 => {
                        for _ in 0..count {
                            self.skip_string()?;
                        }
                    }
                    9 => return Err("nested arrays are not supported".into()),
                    _ => {
                        let size = scalar_size(elem).ok_or(format!("unknown value type {elem}"))?;
                        self.skip(count.saturating_mul(size))?;
                    }
                }
            }
            other => return Err(format!("unknown metadata value type {other}")),
        }
        Ok(None)
    }

    fn read_header(&mut self) -> R<GgufInfo> {
        let magic: [u8; 4] = self
            .bytes()
            .map_err(|_| "file is shorter than a GGUF header".to_string())?;
        if &magic != MAGIC {
            return Err(format!(
                "not a GGUF file (magic {magic:02x?}, expected \"GGUF\")"
            ));
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format!(
                "unsupported GGUF version {version} (2 and 3 are supported)"
            ));
        }
        let tensors = self.u64()?;
        let metadata = self.u64()?;
        if tensors > MAX_COUNT || metadata > MAX_COUNT {
            return Err("implausible tensor or metadata count".into());
        }
        let mut alignment = 32u64;
        let mut architecture = None;
        for _ in 0..metadata {
            let key = self.string()?;
            let ty = self.u32()?;
            if key == "general.alignment" && ty == 4 {
                alignment = u64::from(self.u32()?);
                if alignment == 0 || !alignment.is_power_of_two() {
                    return Err(format!("invalid alignment {alignment}"));
                }
            } else if key == "general.architecture" {
                architecture = self.value(ty, true)?;
            } else {
                self.value(ty, false)?;
            }
        }
        let mut data_needed = 0u64;
        for _ in 0..tensors {
            self.skip_string()?;
            let dims = self.u32()?;
            if dims > MAX_DIMS {
                return Err(format!("tensor with {dims} dimensions"));
            }
            let mut elements = 1u64;
            for _ in 0..dims {
                elements = elements.saturating_mul(self.u64()?);
            }
            let ty = self.u32()?;
            let offset = self.u64()?;
            let bytes = tensor_bytes(ty, elements).unwrap_or(0);
            data_needed = data_needed.max(offset.saturating_add(bytes));
        }
        let header_end = self.pos()?;
        let data_start = header_end.div_ceil(alignment).saturating_mul(alignment);
        Ok(GgufInfo {
            version,
            tensors,
            metadata,
            required_size: data_start.saturating_add(data_needed),
            architecture,
        })
    }
}

fn scalar_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => return None,
    })
}

/// Bytes of a tensor of `elements` values of ggml type `ty` (block size, bytes per block).
/// Unknown types count as zero bytes: the check is then only as strict as the offsets allow.
fn tensor_bytes(ty: u32, elements: u64) -> Option<u64> {
    let (block, bytes) = match ty {
        0 => (1, 4),     // F32
        1 => (1, 2),     // F16
        2 => (32, 18),   // Q4_0
        3 => (32, 20),   // Q4_1
        6 => (32, 22),   // Q5_0
        7 => (32, 24),   // Q5_1
        8 => (32, 34),   // Q8_0
        9 => (32, 36),   // Q8_1
        10 => (256, 84), // Q2_K
        11 => (256, 110),
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),
        17 => (256, 74),
        18 => (256, 98),
        19 => (256, 50),
        20 => (32, 18),
        21 => (256, 110),
        22 => (256, 82),
        23 => (256, 136),
        24 => (1, 1),
        25 => (1, 2),
        26 => (1, 4),
        27 | 28 => (1, 8),
        29 => (256, 56),
        30 => (1, 2), // BF16
        _ => return None,
    };
    Some(elements.div_ceil(block).saturating_mul(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    /// A minimal valid GGUF: one metadata entry, one F32 tensor of 4 values.
    fn tiny_gguf() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&1u64.to_le_bytes()); // metadata
        let key = b"general.architecture";
        b.extend_from_slice(&(key.len() as u64).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&5u64.to_le_bytes());
        b.extend_from_slice(b"llama");
        let name = b"w";
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // F32
        b.extend_from_slice(&0u64.to_le_bytes()); // offset
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend_from_slice(&[0u8; 16]);
        b
    }

    #[test]
    fn valid_header_is_read() {
        let f = write(&tiny_gguf());
        let info = check_gguf(f.path()).unwrap();
        assert_eq!(info.version, 3);
        assert_eq!(info.architecture.as_deref(), Some("llama"));
        assert_eq!(info.required_size, tiny_gguf().len() as u64);
    }

    #[test]
    fn truncated_data_is_rejected() {
        let bytes = tiny_gguf();
        let f = write(&bytes[..bytes.len() - 1]);
        let err = check_gguf(f.path()).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn truncated_header_is_rejected() {
        let f = write(&tiny_gguf()[..30]);
        let err = check_gguf(f.path()).unwrap_err().to_string();
        assert!(err.contains("end of file"), "{err}");
    }

    #[test]
    fn wrong_magic_and_version_are_rejected() {
        let mut bytes = tiny_gguf();
        bytes[0] = b'X';
        assert!(
            check_gguf(write(&bytes).path())
                .unwrap_err()
                .to_string()
                .contains("not a GGUF")
        );
        let mut bytes = tiny_gguf();
        bytes[4] = 99;
        assert!(
            check_gguf(write(&bytes).path())
                .unwrap_err()
                .to_string()
                .contains("version")
        );
        assert!(check_gguf(write(b"").path()).is_err());
    }

    #[test]
    fn implausible_lengths_do_not_allocate() {
        let mut bytes = tiny_gguf();
        // Key length of the metadata entry → huge.
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = check_gguf(write(&bytes).path()).unwrap_err().to_string();
        assert!(err.contains("implausible"), "{err}");
    }
}
