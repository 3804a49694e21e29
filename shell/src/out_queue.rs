//! A connection's bounded queue of bytes waiting to be written.
//!
//! Frames are queued by reference: a broadcast to ten thousand subscribers holds one copy of
//! the encoded frame and ten thousand reference counts, not ten thousand copies. A flush
//! writes as many queued chunks as one `writev` takes, so a burst of small frames leaves in
//! one system call (write coalescing).
//!
//! Pongs are not queued like frames: they jump ahead of the queued frames (after a chunk
//! already begun), and at most [`PENDING_PONGS`] wait at once. A client that pings a few times
//! in a row gets a pong for each; a flood drops the oldest, as RFC 6455 §5.5.3 allows (a pong
//! may answer the latest ping only). A ping flood thus costs a few small frames, never the
//! output budget of a client that reads.

use ferrocast_engine::Frame;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Chunks handed to one `write_vectored` call (well under Linux's IOV_MAX of 1024).
const MAX_SLICES: usize = 64;
/// Pongs waiting at most; one more drops the oldest.
pub(crate) const PENDING_PONGS: usize = 16;
/// Ring capacity an empty queue may keep between bursts.
const RETAINED_CHUNKS: usize = 16;

/// Bytes queued for a socket.
enum Chunk {
    /// A shared, pre-encoded WebSocket frame.
    Frame(Frame),
    /// A shared frame for a permessage-deflate connection: its compressed form when it has
    /// one (computed before queuing), else the plain frame.
    Deflated(Frame),
    /// Bytes owned by this connection: HTTP responses and handshake answers.
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Frame(frame) => frame.wire_bytes(),
            Chunk::Deflated(frame) => frame.deflated_wire_bytes(),
            Chunk::Owned(bytes) => bytes,
        }
    }
}

/// What happened to a frame offered to a bounded queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued.
    Queued,
    /// Refused: the queue is at its byte or frame limit.
    Full,
}

/// A FIFO of chunks with byte and frame accounting.
#[derive(Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
    bytes: usize,
    /// Pongs answering the latest pings, oldest first, not yet in `chunks`.
    pending_pongs: VecDeque<Frame>,
    /// What was written since [`OutQueue::take_write_counts`].
    counts: WriteCounts,
}

/// Frames written and the `writev` calls that carried them: how well writes coalesce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WriteCounts {
    /// Successful `write_vectored` calls that carried at least one byte of a frame.
    pub writes: u64,
    /// WebSocket frames (pongs and closes included) whose last byte was written.
    pub frames: u64,
}

impl OutQueue {
    /// Whether nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.pending_pongs.is_empty()
    }

    /// Bytes waiting to be written.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Chunks (frames and responses) waiting to be written (only the tests ask).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Queues a frame unless that would pass `max_bytes` or `max_frames`.
    ///
    /// A frame offered to an empty queue is always taken, so a single message larger than the
    /// byte limit still goes out (the engine bounds message sizes; this bounds backlogs).
    /// With `deflated`, the frame's compressed form is queued (and counted) when it has one.
    pub(crate) fn offer(
        &mut self,
        frame: &Frame,
        deflated: bool,
        max_bytes: usize,
        max_frames: usize,
    ) -> Offer {
        let chunk = if deflated {
            Chunk::Deflated(frame.clone())
        } else {
            Chunk::Frame(frame.clone())
        };
        let len = chunk.bytes().len();
        if !self.is_empty() && (self.bytes + len > max_bytes || self.chunks.len() >= max_frames) {
            return Offer::Full;
        }
        self.push(chunk);
        Offer::Queued
    }

    /// Queues a chunk regardless of limits.
    fn push(&mut self, chunk: Chunk) {
        self.bytes += chunk.bytes().len();
        self.chunks.push_back(chunk);
    }

    /// Queues a data frame regardless of limits, compressed when `deflated` and it has a
    /// compressed form.
    pub(crate) fn push_data(&mut self, frame: Frame, deflated: bool) {
        self.push(if deflated {
            Chunk::Deflated(frame)
        } else {
            Chunk::Frame(frame)
        });
    }

    /// Queues a frame regardless of limits (close frames must always be attempted).
    pub(crate) fn push_frame(&mut self, frame: Frame) {
        self.bytes += frame.wire_bytes().len();
        self.chunks.push_back(Chunk::Frame(frame));
    }

    /// Holds `pong` to be written ahead of the queued frames, dropping the oldest pong not
    /// yet begun when [`PENDING_PONGS`] already wait.
    ///
    /// Pongs are outside the byte and frame limits: each is a control frame of at most 127
    /// bytes, and there are few.
    pub(crate) fn add_pong(&mut self, pong: Frame) {
        self.bytes += pong.wire_bytes().len();
        if self.pending_pongs.len() == PENDING_PONGS {
            if let Some(stale) = self.pending_pongs.pop_front() {
                self.bytes -= stale.wire_bytes().len();
            }
        }
        self.pending_pongs.push_back(pong);
    }

    /// Queues owned bytes regardless of limits.
    pub(crate) fn push_bytes(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.bytes += bytes.len();
            self.chunks.push_back(Chunk::Owned(bytes));
        }
    }

    /// The frames and frame-carrying writes since the last call, reset to zero.
    pub(crate) fn take_write_counts(&mut self) -> WriteCounts {
        std::mem::take(&mut self.counts)
    }

    /// Writes until the queue is empty (`Ok(true)`) or the socket would block (`Ok(false)`).
    pub(crate) fn write_to(&mut self, w: &mut impl Write) -> io::Result<bool> {
        loop {
            if !self.pending_pongs.is_empty() {
                // Ahead of the frames still waiting, but after a chunk already begun and after
                // the handshake answer (owned bytes), which must precede any frame.
                let begun = usize::from(self.offset > 0);
                let at = (begun..self.chunks.len())
                    .find(|&i| !matches!(self.chunks[i], Chunk::Owned(_)))
                    .unwrap_or(self.chunks.len());
                for (i, pong) in self.pending_pongs.drain(..).enumerate() {
                    self.chunks.insert(at + i, Chunk::Frame(pong));
                }
            }
            if self.chunks.is_empty() {
                // A burst may have grown the ring; an idle connection should not keep it.
                if self.chunks.capacity() > RETAINED_CHUNKS {
                    self.chunks = VecDeque::new();
                }
                return Ok(true);
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            // Bytes of the owned chunks (HTTP answers) in front of the first frame: a write no
            // longer than them carried no frame.
            let (mut owned_bytes, mut in_front) = (0, true);
            for (i, chunk) in self.chunks.iter().take(MAX_SLICES).enumerate() {
                let bytes = chunk.bytes();
                let slice = if i == 0 { &bytes[self.offset..] } else { bytes };
                in_front &= matches!(chunk, Chunk::Owned(_));
                if in_front {
                    owned_bytes += slice.len();
                }
                slices[i] = IoSlice::new(slice);
                count += 1;
            }
            match w.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if n > owned_bytes {
                        self.counts.writes += 1;
                    }
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops everything queued (the socket is going away).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.pending_pongs.clear();
        self.offset = 0;
        self.bytes = 0;
    }

    fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                return;
            };
            let left = front.bytes().len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.offset = 0;
            if let Some(Chunk::Frame(_) | Chunk::Deflated(_)) = self.chunks.pop_front() {
                self.counts.frames += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `per_call` bytes per call and then blocks after `calls`.
    struct Trickle {
        out: Vec<u8>,
        per_call: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let n = buf.len().min(self.per_call);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut queue = OutQueue::default();
        queue.push_bytes(b"HTTP/1.1 101\r\n\r\n".to_vec());
        queue.push_frame(Frame::text(b"one"));
        queue.push_frame(Frame::text(b"two"));
        let expected = [
            b"HTTP/1.1 101\r\n\r\n".to_vec(),
            Frame::text(b"one").wire_bytes().to_vec(),
            Frame::text(b"two").wire_bytes().to_vec(),
        ]
        .concat();
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 3,
            calls: 2,
        };
        assert!(!queue.write_to(&mut w).unwrap());
        assert_eq!(queue.bytes(), expected.len() - 6);
        w.calls = usize::MAX;
        assert!(queue.write_to(&mut w).unwrap());
        assert_eq!(w.out, expected);
        assert!(queue.is_empty());
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn limits_refuse_frames_but_never_the_first() {
        let big = Frame::text(&[b'x'; 100]);
        let mut queue = OutQueue::default();
        assert_eq!(queue.offer(&big, false, 50, 10), Offer::Queued);
        assert_eq!(queue.offer(&Frame::text(b"x"), false, 50, 10), Offer::Full);
        let mut queue = OutQueue::default();
        for _ in 0..3 {
            assert_eq!(
                queue.offer(&Frame::text(b"x"), false, 1000, 3),
                Offer::Queued
            );
        }
        assert_eq!(queue.offer(&Frame::text(b"x"), false, 1000, 3), Offer::Full);
        assert_eq!(queue.len(), 3);
    }

    #[test]
    fn a_ping_flood_leaves_the_latest_pongs_written_first() {
        let mut queue = OutQueue::default();
        queue.push_frame(Frame::text(b"event"));
        for i in 0..10_000u32 {
            queue.add_pong(Frame::pong(&i.to_be_bytes()));
        }
        assert_eq!(queue.len(), 1);
        let mut sink: Vec<u8> = Vec::new();
        assert!(queue.write_to(&mut sink).unwrap());
        let latest = 10_000 - PENDING_PONGS as u32..10_000;
        let mut expected: Vec<u8> = latest
            .flat_map(|i| Frame::pong(&i.to_be_bytes()).wire_bytes().to_vec())
            .collect();
        expected.extend_from_slice(Frame::text(b"event").wire_bytes());
        assert_eq!(sink, expected);
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn a_few_pings_in_a_row_get_a_pong_each_in_order() {
        let mut queue = OutQueue::default();
        for i in 0..10u8 {
            queue.add_pong(Frame::pong(&[i]));
        }
        let mut sink: Vec<u8> = Vec::new();
        assert!(queue.write_to(&mut sink).unwrap());
        let expected: Vec<u8> = (0..10u8)
            .flat_map(|i| Frame::pong(&[i]).wire_bytes().to_vec())
            .collect();
        assert_eq!(sink, expected);
    }

    #[test]
    fn a_pong_waits_for_the_frame_being_written() {
        let mut queue = OutQueue::default();
        queue.push_frame(Frame::text(b"first"));
        queue.push_frame(Frame::text(b"second"));
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 2,
            calls: 1,
        };
        assert!(!queue.write_to(&mut w).unwrap());
        queue.add_pong(Frame::pong(b"p"));
        w.calls = usize::MAX;
        assert!(queue.write_to(&mut w).unwrap());
        let expected = [
            Frame::text(b"first").wire_bytes().to_vec(),
            Frame::pong(b"p").wire_bytes().to_vec(),
            Frame::text(b"second").wire_bytes().to_vec(),
        ]
        .concat();
        assert_eq!(w.out, expected);
    }

    #[test]
    fn a_pong_follows_the_handshake_answer() {
        let mut queue = OutQueue::default();
        queue.push_bytes(b"HTTP/1.1 101\r\n\r\n".to_vec());
        queue.add_pong(Frame::pong(b"p"));
        let mut sink: Vec<u8> = Vec::new();
        assert!(queue.write_to(&mut sink).unwrap());
        let expected = [
            b"HTTP/1.1 101\r\n\r\n".to_vec(),
            Frame::pong(b"p").wire_bytes().to_vec(),
        ]
        .concat();
        assert_eq!(sink, expected);
    }

    #[test]
    fn vectored_write_takes_many_frames_in_one_call() {
        let mut queue = OutQueue::default();
        for _ in 0..10 {
            queue.push_frame(Frame::text(b"tick"));
        }
        let mut sink: Vec<u8> = Vec::new();
        assert!(queue.write_to(&mut sink).unwrap());
        assert_eq!(sink.len(), 10 * Frame::text(b"tick").wire_bytes().len());
        let counts = queue.take_write_counts();
        assert_eq!(
            counts,
            WriteCounts {
                writes: 1,
                frames: 10
            }
        );
        assert_eq!(queue.take_write_counts(), WriteCounts::default());
    }

    #[test]
    fn writes_count_only_when_they_carry_a_frame() {
        let mut queue = OutQueue::default();
        queue.push_bytes(b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
        let mut sink: Vec<u8> = Vec::new();
        assert!(queue.write_to(&mut sink).unwrap());
        assert_eq!(queue.take_write_counts(), WriteCounts::default());
        // The 101 answer and two frames, taken three bytes at a time: the first write holds
        // only answer bytes; a frame counts once its last byte is out.
        queue.push_bytes(b"101".to_vec());
        queue.push_frame(Frame::text(b"one"));
        queue.push_frame(Frame::text(b"two"));
        let mut w = Trickle {
            out: Vec::new(),
            per_call: 3,
            calls: usize::MAX,
        };
        assert!(queue.write_to(&mut w).unwrap());
        // 3 bytes of answer, then 5 + 5 bytes of frames in four writes.
        assert_eq!(
            queue.take_write_counts(),
            WriteCounts {
                writes: 4,
                frames: 2
            }
        );
    }

    #[test]
    fn a_deflate_connection_queues_and_counts_the_compressed_form() {
        let frame = Frame::text(&[b'a'; 1000]);
        let compressed = frame.deflated(|_| Some(vec![1, 2, 3])).to_vec();
        assert_eq!(compressed, [0xC1, 3, 1, 2, 3]);
        let mut queue = OutQueue::default();
        assert_eq!(queue.offer(&frame, true, 1 << 20, 10), Offer::Queued);
        assert_eq!(queue.bytes(), compressed.len());
        assert_eq!(queue.offer(&frame, false, 1 << 20, 10), Offer::Queued);
        queue.push_data(frame.clone(), true);
        let mut sink: Vec<u8> = Vec::new();
        assert!(queue.write_to(&mut sink).unwrap());
        let expected = [&compressed[..], frame.wire_bytes(), &compressed[..]].concat();
        assert_eq!(sink, expected);
        assert_eq!(queue.bytes(), 0);
    }
}
