//! Length-prefixed frames: a big-endian u32 length, then that many bytes of postcard.
//! The length is checked against the caller's limit before a single payload byte is
//! read or allocated, so an oversized frame costs the receiver four bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Error;

pub async fn write_frame<W, M>(writer: &mut W, message: &M) -> Result<(), Error>
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let bytes = crate::encode(message);
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len as usize <= crate::wire::MESSAGE_SIZE_BYTES_MAX)
        .ok_or(Error::FrameTooLarge { len: bytes.len(), max: crate::wire::MESSAGE_SIZE_BYTES_MAX })?;
    let mut buffer = Vec::with_capacity(4 + bytes.len());
    buffer.extend_from_slice(&len.to_be_bytes());
    buffer.extend_from_slice(&bytes);
    writer.write_all(&buffer).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` when the stream ended cleanly before a frame began.
pub async fn read_frame<R, M>(reader: &mut R, size_bytes_max: usize) -> Result<Option<M>, Error>
where
    R: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        let n = reader.read(&mut prefix[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(Error::Decode("stream ended inside a frame's length prefix".into()));
        }
        filled += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > size_bytes_max {
        return Err(Error::FrameTooLarge { len, max: size_bytes_max });
    }
    let mut bytes = vec![0u8; len];
    reader.read_exact(&mut bytes).await?;
    crate::decode(&bytes).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, &("hello".to_string(), 7u32)).await.unwrap();
        write_frame(&mut buffer, &vec![1u8, 2, 3]).await.unwrap();
        let mut reader = buffer.as_slice();
        let first: (String, u32) = read_frame(&mut reader, 1024).await.unwrap().unwrap();
        assert_eq!(first, ("hello".to_string(), 7));
        let second: Vec<u8> = read_frame(&mut reader, 1024).await.unwrap().unwrap();
        assert_eq!(second, vec![1, 2, 3]);
        assert!(read_frame::<_, Vec<u8>>(&mut reader, 1024).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_before_reading_it() {
        let mut bytes = (u32::MAX).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let error = read_frame::<_, Vec<u8>>(&mut bytes.as_slice(), 1024).await.unwrap_err();
        assert!(matches!(error, Error::FrameTooLarge { len, max: 1024 } if len == u32::MAX as usize));
    }

    #[tokio::test]
    async fn malformed_frame_is_a_decode_error() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let error = read_frame::<_, (String, u64)>(&mut bytes.as_slice(), 1024).await.unwrap_err();
        assert!(matches!(error, Error::Decode(_)), "{error}");
        let truncated = [0u8, 0];
        let error = read_frame::<_, Vec<u8>>(&mut truncated.as_slice(), 1024).await.unwrap_err();
        assert!(matches!(error, Error::Decode(_)), "{error}");
    }
}
