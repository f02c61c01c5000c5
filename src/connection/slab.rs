//! Copies small payloads out of a read buffer (tungstenite's, or the
//! lane's when the inbox may keep messages far apart) into shared chunks,
//! so queued messages do not pin that buffer. Used by the I/O thread.

use crate::{Bytes, Message, Utf8Bytes};

/// Messages below this size are copied out of tungstenite's read buffer.
const UNPIN_BELOW: usize = 16 << 10;
/// Size of the chunks small payloads are copied into, by default (below
/// glibc's mmap threshold, so chunks are recycled by the allocator rather
/// than mapped). A hub uses `HUB_SLAB` (`connection::hub`):
/// [`Client::payload_chunk_size`](crate::Client::payload_chunk_size).
pub(crate) const SLAB: usize = 64 << 10;

/// A payload tungstenite hands out shares its read buffer. Queued, it would pin
/// that buffer, and tungstenite would then read into small fresh buffers: one
/// `recv` per message instead of one per 128 KiB. So small payloads are copied
/// into chunks that many messages share: one allocation per chunk, freed when
/// its last message is dropped. A large payload gets a buffer of its own anyway.
///
/// The chunk is allocated with the first small message, not before: an idle
/// connection holds none.
pub(super) struct Slab {
    slab: bytes::BytesMut,
    chunk: usize,
}

impl Slab {
    /// Chunks of `chunk` bytes (a larger small message gets a chunk of its size).
    pub(super) fn new(chunk: usize) -> Slab {
        Slab {
            slab: bytes::BytesMut::new(),
            chunk,
        }
    }

    fn copy(&mut self, data: &[u8]) -> Bytes {
        if self.slab.capacity() - self.slab.len() < data.len() {
            self.slab = bytes::BytesMut::with_capacity(self.chunk.max(data.len()));
        }
        self.slab.extend_from_slice(data);
        self.slab.split().freeze()
    }

    pub(super) fn unpin(&mut self, msg: Message) -> Message {
        match msg {
            Message::Binary(b) if b.len() < UNPIN_BELOW => Message::Binary(self.copy(&b)),
            Message::Text(t) if t.len() < UNPIN_BELOW => {
                let copy = self.copy(t.as_bytes());
                // Valid UTF-8 a moment ago; checking again is cheap at this size.
                Utf8Bytes::try_from(copy).map_or(Message::Text(t), Message::Text)
            }
            other => other,
        }
    }
}
