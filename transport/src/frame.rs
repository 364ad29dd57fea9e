//! Length-prefixed frames: a big-endian u32 length, then that many bytes of postcard,
//! through `tokio_util`'s `LengthDelimitedCodec`. The length is checked against the
//! reader's limit before a single payload byte is buffered, so an oversized frame costs
//! the receiver four bytes.
//!
//! A stream is wrapped once for its whole life: the codec buffers what it reads ahead,
//! so mixing framed and raw reads on one stream would lose bytes.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use icn_protocol::wire::MESSAGE_SIZE_BYTES_MAX;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::Error;

fn codec(size_bytes_max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(size_bytes_max)
        .new_codec()
}

/// The reading half of a framed stream.
pub struct FrameReader<R> {
    inner: FramedRead<R, LengthDelimitedCodec>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R) -> Self {
        FrameReader { inner: FramedRead::new(reader, codec(MESSAGE_SIZE_BYTES_MAX)) }
    }

    /// Reads one frame of at most `size_bytes_max` bytes; `Ok(None)` when the stream
    /// ended cleanly before a frame began.
    pub async fn read<M: DeserializeOwned>(&mut self, size_bytes_max: usize) -> Result<Option<M>, Error> {
        self.inner.decoder_mut().set_max_frame_length(size_bytes_max);
        match self.inner.next().await {
            None => Ok(None),
            Some(Ok(bytes)) => Ok(Some(icn_protocol::decode(&bytes)?)),
            Some(Err(e))
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>()) =>
            {
                Err(Error::FrameTooLarge { max: size_bytes_max })
            }
            Some(Err(e)) => Err(Error::Io(e)),
        }
    }

    /// Waits until the peer ends the stream; anything more it sends is an error.
    pub async fn finished(&mut self) -> Result<(), Error> {
        match self.read::<serde::de::IgnoredAny>(MESSAGE_SIZE_BYTES_MAX).await? {
            None => Ok(()),
            Some(_) => Err(Error::invalid("the peer sent more after its last frame")),
        }
    }

    pub fn get_mut(&mut self) -> &mut R {
        self.inner.get_mut()
    }
}

/// The writing half of a framed stream.
pub struct FrameWriter<W> {
    inner: FramedWrite<W, LengthDelimitedCodec>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(writer: W) -> Self {
        FrameWriter { inner: FramedWrite::new(writer, codec(MESSAGE_SIZE_BYTES_MAX)) }
    }

    /// Encodes and sends one frame, flushed.
    pub async fn write<M: Serialize>(&mut self, message: &M) -> Result<(), Error> {
        let bytes = icn_protocol::encode(message);
        if bytes.len() > MESSAGE_SIZE_BYTES_MAX {
            return Err(Error::FrameTooLarge { max: MESSAGE_SIZE_BYTES_MAX });
        }
        self.inner.send(Bytes::from(bytes)).await.map_err(Error::Io)
    }

    pub fn get_mut(&mut self) -> &mut W {
        self.inner.get_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let mut writer = FrameWriter::new(Vec::new());
        writer.write(&("hello".to_string(), 7u32)).await.unwrap();
        writer.write(&vec![1u8, 2, 3]).await.unwrap();
        let bytes = std::mem::take(writer.get_mut());
        let mut reader = FrameReader::new(bytes.as_slice());
        let first: (String, u32) = reader.read(1024).await.unwrap().unwrap();
        assert_eq!(first, ("hello".to_string(), 7));
        let second: Vec<u8> = reader.read(1024).await.unwrap().unwrap();
        assert_eq!(second, vec![1, 2, 3]);
        assert!(reader.read::<Vec<u8>>(1024).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_from_its_length_alone() {
        // The length claims 4 GiB and only 16 bytes follow: refused on the prefix.
        let mut bytes = (u32::MAX).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let error = FrameReader::new(bytes.as_slice()).read::<Vec<u8>>(1024).await.unwrap_err();
        assert!(matches!(error, Error::FrameTooLarge { max: 1024 }), "{error}");
    }

    #[tokio::test]
    async fn malformed_and_truncated_frames_are_errors() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let error = FrameReader::new(bytes.as_slice()).read::<(String, u64)>(1024).await.unwrap_err();
        assert!(matches!(error, Error::Protocol(icn_protocol::Error::Decode(_))), "{error}");
        let truncated = [0u8, 0];
        assert!(FrameReader::new(truncated.as_slice()).read::<Vec<u8>>(1024).await.is_err());
    }
}
