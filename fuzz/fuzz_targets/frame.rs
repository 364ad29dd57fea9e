//! A framed stream as `icn_transport::FrameReader` reads it (a big-endian u32 length,
//! then that many bytes of postcard) from an in-memory reader, checked frame by frame
//! against a model of the format: a length over the reader's limit is refused from the
//! length alone, a stream cut inside a frame is an error, a clean end is `None`, and
//! each whole frame decodes exactly as `icn_protocol::decode` decodes its body.
//!
//! Input: two bytes of limit (little-endian), one byte of mode (odd: the stream is
//! awaited to its end with `finished`), then the stream.
#![no_main]

use std::sync::LazyLock;

use icn_protocol::wire::ClientRequest;
use icn_transport::{Error, FrameReader};

/// Frames read from one input at most: enough for any stream a short input makes.
const FRAMES_MAX: usize = 64;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime")
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [low, high, mode, stream @ ..] = data else { return };
    let limit = usize::from(u16::from_le_bytes([*low, *high]));
    RUNTIME.block_on(async {
        let mut reader = FrameReader::new(stream);
        if mode % 2 == 1 {
            finished(&mut reader, stream).await;
            return;
        }
        let mut rest = stream;
        for _ in 0..FRAMES_MAX {
            let got = reader.read::<ClientRequest>(limit).await;
            let Some(body) = next_frame(&mut rest, limit, &got) else { return };
            match (got, icn_protocol::decode::<ClientRequest>(body)) {
                (Ok(Some(read)), Ok(expected)) => {
                    assert_eq!(icn_protocol::encode(&read), icn_protocol::encode(&expected));
                }
                (Err(Error::Protocol(_)), Err(_)) => {}
                (got, expected) => {
                    panic!("a {}-byte frame read as {got:?}; its body decodes as {expected:?}", body.len())
                }
            }
        }
    });
});

/// The model: the next frame's body, advancing `rest`, or `None` once the reader must
/// have stopped, after checking that `got` is what the model says it must be.
fn next_frame<'a>(
    rest: &mut &'a [u8],
    limit: usize,
    got: &Result<Option<ClientRequest>, Error>,
) -> Option<&'a [u8]> {
    if rest.is_empty() {
        assert!(matches!(got, Ok(None)), "a clean end read as {got:?}");
        return None;
    }
    let Some((length, after)) = rest.split_first_chunk::<4>() else {
        assert!(matches!(got, Err(Error::Io(_))), "a stream cut inside a length read as {got:?}");
        return None;
    };
    let length = u32::from_be_bytes(*length) as usize;
    if length > limit {
        assert!(
            matches!(got, Err(Error::FrameTooLarge { max }) if *max == limit),
            "a {length}-byte frame over the limit of {limit} read as {got:?}"
        );
        return None;
    }
    if after.len() < length {
        assert!(matches!(got, Err(Error::Io(_))), "a stream cut inside a frame read as {got:?}");
        return None;
    }
    let (body, after) = after.split_at(length);
    *rest = after;
    Some(body)
}

/// `finished` is `Ok` on a stream that ends cleanly, and refuses one that holds a frame.
async fn finished(reader: &mut FrameReader<&[u8]>, stream: &[u8]) {
    let result = reader.finished().await;
    if stream.is_empty() {
        assert!(result.is_ok(), "an empty stream did not finish: {result:?}");
        return;
    }
    assert!(result.is_err(), "a stream of {} bytes finished cleanly", stream.len());
    let whole = stream
        .split_first_chunk::<4>()
        .is_some_and(|(length, after)| u32::from_be_bytes(*length) as usize <= after.len());
    if whole
        && u32::from_be_bytes(stream[..4].try_into().expect("4 bytes")) as usize
            <= icn_protocol::wire::MESSAGE_SIZE_BYTES_MAX
    {
        let message = result.unwrap_err().to_string();
        assert!(message.contains("sent more after its last frame"), "a whole frame after the end: {message}");
    }
}
