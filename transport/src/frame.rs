//! Length-prefixed frames: a big-endian u32 length, then that many bytes of postcard,
//! through `tokio_util`'s `LengthDelimitedCodec`. The length is checked against the
//! reader's limit before a single payload byte is buffered, so an oversized frame costs
//! the receiver four bytes.
//!
//! A stream is wrapped once for its whole life: the codec buffers what it reads ahead,
//! so mixing framed and raw reads on one stream would lose bytes.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use icn_protocol::wire::MESSAGE_SIZE_BYTES_MAX;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::Error;

fn codec(size_bytes_max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(size_bytes_max)
        .new_codec()
}

/// The codec's frames, with a stream that ends inside a frame made an error. The codec
/// takes a frame's length out of its buffer before the body arrives, so its default
/// `decode_eof` found the buffer empty and read a stream cut after a length as a clean
/// end (found by the `frame` fuzz target).
struct Frames {
    codec: LengthDelimitedCodec,
    /// A frame's length was read and its body has not all arrived.
    inside: bool,
}

impl Decoder for Frames {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> std::io::Result<Option<BytesMut>> {
        let before = src.len();
        let frame = self.codec.decode(src)?;
        self.inside = frame.is_none() && (self.inside || src.len() < before);
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> std::io::Result<Option<BytesMut>> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.inside => Ok(None),
            None => {
                Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the stream ended inside a frame"))
            }
        }
    }
}

/// The reading half of a framed stream.
pub struct FrameReader<R> {
    inner: FramedRead<R, Frames>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R) -> Self {
        let frames = Frames { codec: codec(MESSAGE_SIZE_BYTES_MAX), inside: false };
        FrameReader { inner: FramedRead::new(reader, frames) }
    }

    /// Reads one frame of at most `size_bytes_max` bytes; `Ok(None)` when the stream
    /// ended cleanly before a frame began.
    pub async fn read<M: DeserializeOwned>(&mut self, size_bytes_max: usize) -> Result<Option<M>, Error> {
        match self.next_frame(size_bytes_max).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(icn_protocol::decode(&bytes)?)),
        }
    }

    /// Waits until the peer ends the stream; anything more it sends is an error. The
    /// frame is not decoded: postcard cannot skip a value it is not told the type of
    /// (`IgnoredAny`), which made every extra frame read as a malformed message.
    pub async fn finished(&mut self) -> Result<(), Error> {
        match self.next_frame(MESSAGE_SIZE_BYTES_MAX).await? {
            None => Ok(()),
            Some(_) => Err(Error::invalid("the peer sent more after its last frame")),
        }
    }

    /// The next frame's bytes, of at most `size_bytes_max`; `None` at a clean end.
    async fn next_frame(&mut self, size_bytes_max: usize) -> Result<Option<Bytes>, Error> {
        self.inner.decoder_mut().codec.set_max_frame_length(size_bytes_max);
        match self.inner.next().await {
            None => Ok(None),
            Some(Ok(bytes)) => Ok(Some(bytes.freeze())),
            Some(Err(e))
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>()) =>
            {
                Err(Error::FrameTooLarge { max: size_bytes_max })
            }
            Some(Err(e)) => Err(Error::Io(e)),
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

    /// Found by the `frame` fuzz target: a frame after the last one was reported as a
    /// malformed message ("a feature that PostCard will never implement"), since
    /// postcard cannot decode `IgnoredAny`; it is named for what it is.
    #[tokio::test]
    async fn a_frame_after_the_last_is_named_as_one() {
        let more = [0u8, 0, 0, 1, 22];
        let error = FrameReader::new(more.as_slice()).finished().await.unwrap_err();
        assert!(error.to_string().contains("sent more after its last frame"), "{error}");
        let empty = [0u8, 0, 0, 0];
        let error = FrameReader::new(empty.as_slice()).finished().await.unwrap_err();
        assert!(error.to_string().contains("sent more after its last frame"), "{error}");
        assert!(FrameReader::new([].as_slice()).finished().await.is_ok());
        let cut = [0u8, 0, 0, 9, 1];
        assert!(matches!(FrameReader::new(cut.as_slice()).finished().await, Err(Error::Io(_))));
    }

    /// Found by the `frame` fuzz target: a stream cut right after a frame's length read
    /// as a clean end (`Ok(None)`), as if the peer had sent nothing more.
    #[tokio::test]
    async fn a_stream_cut_after_a_length_is_not_a_clean_end() {
        let cut = [0u8, 0, 0x1c, 0];
        let error = FrameReader::new(cut.as_slice()).read::<Vec<u8>>(1 << 16).await.unwrap_err();
        assert!(matches!(&error, Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{error}");
        assert!(FrameReader::new(cut.as_slice()).finished().await.is_err());
        // After a whole frame, the same cut is still an error; a whole frame then the end is not.
        let mut stream = vec![0u8, 0, 0, 1, 7];
        stream.extend_from_slice(&cut);
        let mut reader = FrameReader::new(stream.as_slice());
        assert_eq!(reader.read::<u8>(1 << 16).await.unwrap(), Some(7));
        assert!(reader.read::<u8>(1 << 16).await.is_err());
        let mut reader = FrameReader::new([0u8, 0, 0, 1, 7].as_slice());
        assert_eq!(reader.read::<u8>(1 << 16).await.unwrap(), Some(7));
        assert!(reader.read::<u8>(1 << 16).await.unwrap().is_none());
    }
}
