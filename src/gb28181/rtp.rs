//! RTP for GB/T 28181 media: PS over RTP, reordering, RFC 4571 framing over TCP.
//!
//! A device sends its MPEG-PS stream (`a=rtpmap:96 PS/90000`) as RTP over UDP, or over TCP with each
//! packet framed by a 2-byte big-endian length (RFC 4571) or, by some devices, RTSP-style (`$`,
//! channel, 2-byte length). The pieces, in the order data flows through them:
//!
//! - [`TcpFramer`]: cuts the TCP byte stream into packets, detecting the framing per stream and
//!   resyncing after damage.
//! - [`RtpPacket::parse`]: the RTP header (RFC 3550): CSRCs, header extension and padding skipped.
//! - [`Reorder`]: the jitter buffer: packets in sequence order (16-bit, wrapping), duplicates and
//!   other SSRCs dropped, a missing packet given up after a window of packets or a hold time (the
//!   caller passes `now`; there is no hidden clock), a restarted sender detected.
//! - [`PsOverRtp`]: all of the above in front of a [`PsDemuxer`], giving access units; a unit hit
//!   by a loss is dropped.
//!
//! Memory per stream: [`Reorder`] holds at most its window ([`MAX_WINDOW`] = 512 at most) of
//! packets, each at most 65,535 bytes (in practice ~1,400); [`TcpFramer`] keeps at most
//! [`MAX_TCP_HELD`] bytes between calls; the demuxer's bound is in [`super::ps`].

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ps::{PsDemuxer, PsStats, PsUnit};

/// The RTP fixed header's size in bytes.
pub const HEADER_LEN: usize = 12;
/// The most packets a [`Reorder`] holds, whatever its configuration.
pub const MAX_WINDOW: u16 = 512;
/// A sequence number this far or farther from the expected one (ahead or behind) is taken for a
/// restarted sender: [`Reorder`] resets.
pub const MAX_JUMP: u16 = 1000;
/// The most bytes a [`TcpFramer`] keeps between calls: a 4-byte framing header, a 65,535-byte
/// packet and the next frame's framing and RTP headers (checked while resyncing).
pub const MAX_TCP_HELD: usize = 4 + 65_535 + 4 + HEADER_LEN;
/// Packets behind the expected sequence number in a row that make [`Reorder`] reset (a sender that
/// restarted a little behind).
const BEHIND_RESET: u16 = 32;
/// Packets of another SSRC in a row after which an SSRC that was locked on (not expected) is given up.
const RELOCK_AFTER: u16 = 64;
/// Sequence numbers remembered as received or not (duplicate or late), a power of two.
const HISTORY: usize = 1024;

/// A packet that is not RTP, or whose header does not fit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed header.
    #[error("RTP packet of {len} bytes: shorter than the 12-byte fixed header")]
    TooShort {
        /// The packet's length.
        len: usize,
    },
    /// The version bits are not 2.
    #[error("RTP version {version} (first byte 0x{first:02x}): only version 2 is RTP")]
    Version {
        /// The version found.
        version: u8,
        /// The first byte.
        first: u8,
    },
    /// The CSRC list or the header extension runs past the packet.
    #[error("RTP {part} runs past the end: it needs {need} bytes, the packet has {len}")]
    Overrun {
        /// `CSRC list`, `header extension header` or `header extension`.
        part: &'static str,
        /// The bytes the header needs up to the end of that part.
        need: usize,
        /// The packet's length.
        len: usize,
    },
    /// The padding bit is set but the last byte does not count 1 to `room` bytes.
    #[error(
        "RTP padding count {count} is invalid: it must be 1 to the {room} bytes after the header"
    )]
    Padding {
        /// The padding count (the packet's last byte).
        count: u8,
        /// Bytes after the header, padding included.
        room: usize,
    },
}

/// A header extension (RFC 3550 5.3.1), as carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The profile-defined 16 bits (`0xBEDE` for RFC 8285 one-byte extensions).
    pub profile: u16,
    /// The extension's data (a multiple of 4 bytes).
    pub data: &'a [u8],
}

/// An RTP packet borrowed from its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The marker bit (PS over RTP: the last packet of a frame).
    pub marker: bool,
    /// The payload type (7 bits; PS is usually 96).
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The timestamp (90 kHz for PS).
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
    /// The CSRC list, 4 bytes an entry (see [`RtpPacket::csrcs`]).
    pub csrc: &'a [u8],
    /// The header extension, if the X bit is set.
    pub extension: Option<Extension<'a>>,
    /// Padding bytes stripped from the end (0 when the P bit is clear).
    pub padding: u8,
    /// The payload, padding removed.
    pub payload: &'a [u8],
}

/// The header fields and where the payload lies.
type Parts<'a> = (RtpPacket<'a>, Range<usize>);

fn parse_parts(buf: &[u8]) -> Result<Parts<'_>, RtpError> {
    let len = buf.len();
    let Some(&[b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3]) = buf.get(..HEADER_LEN) else {
        return Err(RtpError::TooShort { len });
    };
    if b0 >> 6 != 2 {
        let (version, first) = (b0 >> 6, b0);
        return Err(RtpError::Version { version, first });
    }
    let overrun = |part, need| RtpError::Overrun { part, need, len };
    let mut off = HEADER_LEN + 4 * usize::from(b0 & 0x0F);
    let csrc = buf.get(HEADER_LEN..off).ok_or(overrun("CSRC list", off))?;
    let mut extension = None;
    if b0 & 0x10 != 0 {
        let Some(&[p0, p1, w0, w1]) = buf.get(off..off + 4) else {
            return Err(overrun("header extension header", off + 4));
        };
        let end = off + 4 + 4 * usize::from(u16::from_be_bytes([w0, w1]));
        let data = buf
            .get(off + 4..end)
            .ok_or(overrun("header extension", end))?;
        let profile = u16::from_be_bytes([p0, p1]);
        extension = Some(Extension { profile, data });
        off = end;
    }
    let mut padding = 0;
    if b0 & 0x20 != 0 {
        let room = len - off;
        let count = if room == 0 {
            0
        } else {
            buf.last().copied().unwrap_or(0)
        };
        if count == 0 || usize::from(count) > room {
            return Err(RtpError::Padding { count, room });
        }
        padding = count;
    }
    let range = off..len - usize::from(padding);
    let packet = RtpPacket {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7F,
        sequence: u16::from_be_bytes([s0, s1]),
        timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
        ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
        csrc,
        extension,
        padding,
        payload: buf.get(range.clone()).unwrap_or_default(),
    };
    Ok((packet, range))
}

impl<'a> RtpPacket<'a> {
    /// Parses an RTP packet: version 2, the CSRC list and header extension skipped, padding
    /// validated and stripped. Any bytes are accepted without panic; what does not fit is an error.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        parse_parts(buf).map(|(p, _)| p)
    }

    /// The contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let list: &'a [u8] = self.csrc;
        list.chunks_exact(4)
            .map(|c| c.iter().fold(0, |v, b| v << 8 | u32::from(*b)))
    }

    /// An owned copy of the fields a receiver needs, the payload copied.
    pub fn to_packet(&self) -> Packet {
        self.with_payload(Bytes::copy_from_slice(self.payload))
    }

    fn with_payload(&self, payload: Bytes) -> Packet {
        Packet {
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            marker: self.marker,
            payload_type: self.payload_type,
            payload,
        }
    }
}

/// An RTP packet with its payload owned, as [`Reorder`] holds and gives it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The sequence number.
    pub sequence: u16,
    /// The timestamp.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
    /// The marker bit.
    pub marker: bool,
    /// The payload type.
    pub payload_type: u8,
    /// The payload, padding removed.
    pub payload: Bytes,
}

impl Packet {
    /// Parses an RTP packet held in `data`; the payload shares `data`'s memory (no copy).
    pub fn from_bytes(data: &Bytes) -> Result<Self, RtpError> {
        let (p, range) = parse_parts(data)?;
        Ok(p.with_payload(data.slice(range)))
    }
}

/// How [`Reorder`] waits for a missing packet, and which source it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// Packets held at most while one is missing (1 to [`MAX_WINDOW`]; clamped); default 64. A
    /// packet that would need more gives up the oldest missing ones.
    pub window: u16,
    /// The longest a packet is held while an earlier one is missing; default 200 ms.
    pub max_hold: Duration,
    /// The SSRC to accept (the `y=` line of the SDP); `None`: lock on the first seen.
    pub ssrc: Option<u32>,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        Self {
            window: 64,
            max_hold: Duration::from_millis(200),
            ssrc: None,
        }
    }
}

/// What [`Reorder`] gives out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ordered {
    /// The next packet.
    Packet(Packet),
    /// Packets given up for lost just before the next item; what was being assembled is damaged.
    Gap {
        /// How many sequence numbers are missing.
        lost: u16,
    },
    /// The sender restarted (see [`Reorder`]): what came before was given out; the stream starts
    /// again with the next packet.
    Reset,
}

/// [`Reorder`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReorderStats {
    /// Packets given out.
    pub packets: u64,
    /// Sequence numbers given up for lost.
    pub lost: u64,
    /// Packets received twice (dropped).
    pub duplicates: u64,
    /// Packets that came after they were given up for lost (dropped).
    pub late: u64,
    /// Packets that came after one with a higher sequence number (and were put back in order).
    pub reordered: u64,
    /// Packets of another SSRC (dropped).
    pub wrong_ssrc: u64,
    /// Restarts of the sequence ([`Ordered::Reset`]).
    pub resets: u64,
}

/// A jitter buffer: RTP packets in, packets in sequence order out.
///
/// A missing packet is given up ([`Ordered::Gap`]) once a later packet has been held for the hold
/// time, or when a later one would not fit the window. Dropped and counted: duplicates (recognised
/// up to 512 behind), packets whose number was already given up (late), packets of another SSRC.
/// [`Ordered::Reset`] comes for a sequence number [`MAX_JUMP`] or more away, 32 packets in a row
/// behind, or (no SSRC expected) 64 packets in a row of one other SSRC. The first packet accepted
/// (after creation or a reset) is given out at once, so one that arrives just after it with a lower
/// sequence number is late. Memory: at most the window's packets and a 128-byte history.
#[derive(Debug)]
pub struct Reorder {
    window: usize,
    max_hold: Duration,
    expected: Option<u32>,
    ssrc: Option<u32>,
    /// The next sequence number to give out; `None` before the first packet.
    next: Option<u16>,
    /// `slots[k]`: the packet `next + k` and when it came; the back is always a packet.
    slots: VecDeque<Option<(Packet, Instant)>>,
    /// Whether each of the last [`HISTORY`] sequence numbers was received (by `seq % HISTORY`).
    seen: [u64; HISTORY / 64],
    behind_run: u16,
    wrong_run: u16,
    stats: ReorderStats,
}

impl Reorder {
    /// An empty buffer.
    pub fn new(config: ReorderConfig) -> Self {
        Self {
            window: usize::from(config.window.clamp(1, MAX_WINDOW)),
            max_hold: config.max_hold,
            expected: config.ssrc,
            ssrc: config.ssrc,
            next: None,
            slots: VecDeque::new(),
            seen: [0; HISTORY / 64],
            behind_run: 0,
            wrong_run: 0,
            stats: ReorderStats::default(),
        }
    }

    /// Takes a packet that came at `now`; returns what is ready, hold-time expiries included.
    pub fn push(&mut self, packet: Packet, now: Instant) -> Vec<Ordered> {
        let mut out = Vec::new();
        match self.ssrc {
            Some(s) if s != packet.ssrc => {
                self.wrong_run = self.wrong_run.saturating_add(1);
                if self.expected.is_none() && self.wrong_run >= RELOCK_AFTER {
                    // The locked-on source went silent and another speaks: a restarted sender.
                    self.ssrc = Some(packet.ssrc);
                    self.reset(packet, &mut out);
                } else {
                    self.stats.wrong_ssrc += 1;
                    self.expire(now, &mut out);
                }
                return out;
            }
            _ => (self.ssrc, self.wrong_run) = (Some(packet.ssrc), 0),
        }
        let Some(next) = self.next else {
            self.start(packet, &mut out);
            return out;
        };
        let ahead = packet.sequence.wrapping_sub(next);
        let behind = next.wrapping_sub(packet.sequence);
        if ahead >= MAX_JUMP && behind >= MAX_JUMP {
            self.reset(packet, &mut out);
            return out;
        }
        if ahead < MAX_JUMP {
            self.behind_run = 0;
            let mut k = usize::from(ahead);
            if k >= self.window {
                self.advance(k + 1 - self.window, &mut out);
                let next = self.next.unwrap_or(packet.sequence);
                k = usize::from(packet.sequence.wrapping_sub(next));
            }
            if self.slots.get(k).is_some_and(Option::is_some) {
                self.stats.duplicates += 1;
            } else {
                if k + 1 < self.slots.len() {
                    self.stats.reordered += 1;
                }
                if self.slots.len() <= k {
                    self.slots.resize(k + 1, None);
                }
                self.set_seen(packet.sequence, true);
                if let Some(slot) = self.slots.get_mut(k) {
                    *slot = Some((packet, now));
                }
                self.drain(&mut out);
            }
        } else {
            self.behind_run += 1;
            if self.behind_run >= BEHIND_RESET {
                self.reset(packet, &mut out);
                return out;
            }
            if usize::from(behind) <= HISTORY / 2 && self.is_seen(packet.sequence) {
                self.stats.duplicates += 1;
            } else {
                self.stats.late += 1;
            }
        }
        self.expire(now, &mut out);
        out
    }

    /// Gives up the missing packets before any packet held for the hold time by `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<Ordered> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        out
    }

    /// Gives out every packet held, the missing ones given up (the end of the stream).
    pub fn flush(&mut self) -> Vec<Ordered> {
        let mut out = Vec::new();
        self.advance(self.slots.len(), &mut out);
        out
    }

    /// When [`Reorder::poll`] will next give something out, if a packet is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        let held = self.slots.iter().flatten();
        held.filter_map(|(_, at)| at.checked_add(self.max_hold))
            .min()
    }

    /// Packets held now.
    pub fn held(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// The counters.
    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    fn start(&mut self, packet: Packet, out: &mut Vec<Ordered>) {
        self.next = Some(packet.sequence.wrapping_add(1));
        self.set_seen(packet.sequence, true);
        self.emit(packet, out);
    }

    fn reset(&mut self, packet: Packet, out: &mut Vec<Ordered>) {
        self.advance(self.slots.len(), out);
        out.push(Ordered::Reset);
        self.stats.resets += 1;
        (self.seen, self.behind_run) = ([0; HISTORY / 64], 0);
        self.start(packet, out);
    }

    fn emit(&mut self, packet: Packet, out: &mut Vec<Ordered>) {
        self.stats.packets += 1;
        out.push(Ordered::Packet(packet));
    }

    /// Moves `next` on by `n`, giving out the packets held there and a gap for each run of holes.
    fn advance(&mut self, n: usize, out: &mut Vec<Ordered>) {
        let Some(mut next) = self.next else { return };
        let mut lost: u16 = 0;
        for _ in 0..n {
            match self.slots.pop_front() {
                Some(Some((p, _))) => {
                    self.gap(&mut lost, out);
                    self.emit(p, out);
                }
                _ => {
                    self.set_seen(next, false);
                    lost = lost.saturating_add(1);
                }
            }
            next = next.wrapping_add(1);
        }
        self.next = Some(next);
        self.gap(&mut lost, out);
        self.drain(out);
    }

    fn gap(&mut self, lost: &mut u16, out: &mut Vec<Ordered>) {
        if *lost > 0 {
            self.stats.lost += u64::from(*lost);
            out.push(Ordered::Gap { lost: *lost });
            *lost = 0;
        }
    }

    /// Gives out the packets held in sequence from `next`.
    fn drain(&mut self, out: &mut Vec<Ordered>) {
        while let Some(Some(_)) = self.slots.front() {
            if let Some(Some((p, _))) = self.slots.pop_front() {
                self.emit(p, out);
            }
            self.next = self.next.map(|n| n.wrapping_add(1));
        }
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Ordered>) {
        let due = |s: &Option<(Packet, Instant)>| {
            s.as_ref()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= self.max_hold)
        };
        if let Some(k) = self.slots.iter().rposition(due) {
            self.advance(k, out);
        }
    }

    fn set_seen(&mut self, seq: u16, on: bool) {
        let i = usize::from(seq) % HISTORY;
        if let Some(w) = self.seen.get_mut(i / 64) {
            *w = (*w & !(1 << (i % 64))) | u64::from(on) << (i % 64);
        }
    }

    fn is_seen(&self, seq: u16) -> bool {
        let i = usize::from(seq) % HISTORY;
        self.seen
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
}

/// How RTP packets are framed on a TCP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RFC 4571: a 2-byte big-endian length, then the packet.
    Rfc4571,
    /// RTSP interleaved (RFC 2326 10.12): `$`, a channel byte, a 2-byte length, then the packet.
    Interleaved,
}

/// One packet cut from a TCP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket {
    /// The interleaved channel (RTP usually 0, RTCP 1); `None` for RFC 4571.
    pub channel: Option<u8>,
    /// The packet (RTP, or RTCP where muxed).
    pub data: Bytes,
}

/// [`TcpFramer`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Packets cut out.
    pub packets: u64,
    /// Times the framing was lost (a bad header, or garbage before the first packet).
    pub framing_errors: u64,
    /// Bytes skipped while resyncing.
    pub skipped_bytes: u64,
}

/// Cuts RTP packets out of a TCP byte stream pushed in chunks of any size; see [`Framing`].
///
/// The framing is detected on the first packets, then kept: the stream starts (after any garbage)
/// where a framed RTP packet is followed by another of the same SSRC (garbage at the start may hold
/// this back until up to [`MAX_TCP_HELD`] bytes have come). A header that is not plausible (a length
/// under 12, or 8 for RTCP; a byte that is not RTP version 2; no `$`) is damage: bytes are skipped
/// up to the next framed RTP packet with the SSRC of the last packet cut out. Memory: at most
/// [`MAX_TCP_HELD`] bytes between calls (plus the chunk being pushed, during a call); packets are
/// copied out.
#[derive(Debug, Default)]
pub struct TcpFramer {
    buf: Vec<u8>,
    /// Bytes of `buf` consumed during a push (dropped at its end).
    pos: usize,
    framing: Option<Framing>,
    synced: bool,
    counted: bool,
    /// The SSRC of the last RTP packet cut out.
    ssrc: Option<[u8; 4]>,
    stats: FramerStats,
}

enum Head {
    More,
    Bad,
    Frame {
        hl: usize,
        len: usize,
        channel: Option<u8>,
    },
}

/// The framing header at the start of `b`, if plausible.
fn head(b: &[u8], framing: Framing) -> Head {
    let (hl, channel, len) = match (framing, b) {
        (Framing::Rfc4571, [l0, l1, ..]) => (2, None, u16::from_be_bytes([*l0, *l1])),
        (Framing::Interleaved, [d, ..]) if *d != b'$' => return Head::Bad,
        (Framing::Interleaved, [_, ch, l0, l1, ..]) => {
            (4, Some(*ch), u16::from_be_bytes([*l0, *l1]))
        }
        _ => return Head::More,
    };
    let Some(&[b0, b1]) = b.get(hl..hl + 2) else {
        return Head::More;
    };
    let min = if (200..=204).contains(&b1) {
        8
    } else {
        HEADER_LEN
    };
    let len = usize::from(len);
    if b0 >> 6 != 2 || len < min {
        return Head::Bad;
    }
    Head::Frame { hl, len, channel }
}

enum Probe {
    More,
    Bad,
    Rtp { next: usize, ssrc: [u8; 4] },
}

/// A plausible RTP packet (not RTCP) at the start of `b`: where the next frame starts, its SSRC.
fn probe(b: &[u8], framing: Framing) -> Probe {
    match head(b, framing) {
        Head::More => Probe::More,
        Head::Bad => Probe::Bad,
        Head::Frame { hl, len, .. } => match b.get(hl + 1..hl + 12) {
            None => Probe::More,
            Some([pt, ..]) if (200..=204).contains(pt) => Probe::Bad,
            Some(&[.., s0, s1, s2, s3]) => Probe::Rtp {
                next: hl + len,
                ssrc: [s0, s1, s2, s3],
            },
            Some(_) => Probe::Bad,
        },
    }
}

impl TcpFramer {
    /// A framer that has not seen a byte yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the stream; returns the packets they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<TcpPacket> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            match (self.synced, self.framing) {
                (true, Some(f)) => match head(rest, f) {
                    Head::More => break,
                    Head::Bad => {
                        self.synced = false;
                        self.skip(1);
                    }
                    Head::Frame { hl, len, channel } => {
                        let Some(packet) = rest.get(hl..hl + len) else {
                            break;
                        };
                        let data = Bytes::copy_from_slice(packet);
                        if let Probe::Rtp { ssrc, .. } = probe(rest, f) {
                            self.ssrc = Some(ssrc);
                        }
                        self.pos += hl + len;
                        self.stats.packets += 1;
                        out.push(TcpPacket { channel, data });
                    }
                },
                _ => match self.scan(rest) {
                    Ok((at, f)) => {
                        self.skip(at);
                        (self.framing, self.synced, self.counted) = (Some(f), true, false);
                    }
                    Err(at) => {
                        self.skip(at);
                        break;
                    }
                },
            }
        }
        self.buf.drain(..self.pos.min(self.buf.len()));
        self.pos = 0;
        if self.buf.capacity() > 2 * MAX_TCP_HELD {
            self.buf.shrink_to(MAX_TCP_HELD);
        }
        out
    }

    /// The framing detected, once a packet was found.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// Bytes held, waiting for the rest of a packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The counters.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// `Ok`: where an RTP packet starts that is followed by another of the same SSRC; `Err`: bytes
    /// that hold no such start.
    fn scan(&self, rest: &[u8]) -> Result<(usize, Framing), usize> {
        let framings: &[Framing] = match self.framing {
            Some(Framing::Rfc4571) => &[Framing::Rfc4571],
            Some(Framing::Interleaved) => &[Framing::Interleaved],
            None => &[Framing::Interleaved, Framing::Rfc4571],
        };
        for at in 0..rest.len() {
            let b = rest.get(at..).unwrap_or_default();
            for &f in framings {
                match probe(b, f) {
                    Probe::More => return Err(at),
                    Probe::Bad => {}
                    Probe::Rtp { ssrc, .. } if self.ssrc.is_some() => {
                        if self.ssrc == Some(ssrc) {
                            return Ok((at, f));
                        }
                    }
                    Probe::Rtp { next, ssrc } => {
                        match probe(b.get(next..).unwrap_or_default(), f) {
                            Probe::More => return Err(at),
                            Probe::Rtp { ssrc: s, .. } if s == ssrc => return Ok((at, f)),
                            _ => {}
                        }
                    }
                }
            }
        }
        Err(rest.len())
    }

    fn skip(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.pos += n;
        self.stats.skipped_bytes += n as u64;
        if !std::mem::replace(&mut self.counted, true) {
            self.stats.framing_errors += 1;
        }
    }
}

/// [`PsOverRtp`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpStats {
    /// RTP packets whose payload went to the demuxer.
    pub packets: u64,
    /// Sequence numbers given up for lost.
    pub lost: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets that came after they were given up.
    pub late: u64,
    /// Packets put back in order.
    pub reordered: u64,
    /// Packets of another SSRC.
    pub wrong_ssrc: u64,
    /// Sender restarts.
    pub resets: u64,
    /// TCP framing lost and resynced.
    pub framing_errors: u64,
    /// Datagrams or TCP frames that are not RTP ([`RtpError`]).
    pub bad_packets: u64,
    /// RTCP packets (payload type 200 to 204) ignored.
    pub rtcp: u64,
    /// Access units dropped because a gap or reset cut them.
    pub damaged_units: u64,
}

/// MPEG-PS over RTP, UDP or TCP, to access units: [`TcpFramer`], [`Reorder`] and [`PsDemuxer`].
///
/// On a gap or a reset the unit being assembled is dropped and the demuxer resyncs at the next pack
/// header. `PsDemuxer` has no method to drop its unit in progress, so [`PsDemuxer::finish`] is used:
/// it gives out the unit in progress (which is then discarded here, see below) and puts the demuxer
/// back to searching for a pack header, which is the resync wanted. The other way, a flag that drops
/// the next unit the demuxer emits, was not taken: bytes from both sides of the hole would be spliced
/// into one unit, and when the demuxer notices that damage itself and drops the unit, the flag would
/// throw away the next, intact one. The unit `finish` gives out last is the one in progress when its
/// stats show no unit dropped (earlier ones it gives out were complete). It is kept only when
/// [`PsOverRtp::keep_marked_unit`] is on and the packet before the gap had the marker bit (the end
/// of a frame, as devices set it).
///
/// GB/T 28181 devices start every frame with a pack header, so a loss costs the frame it hit; a
/// muxer that writes pack headers rarely (GStreamer's `mpegpsmux`: 4 in 50 frames) loses everything
/// up to the next one. RTCP (a second byte of 200 to 204) is counted and ignored; the payload type
/// is not checked (devices use 96, some others).
///
/// Memory: the reorder window, [`MAX_TCP_HELD`] bytes of TCP framing and the demuxer's bound.
#[derive(Debug)]
pub struct PsOverRtp {
    reorder: Reorder,
    framer: TcpFramer,
    demux: PsDemuxer,
    keep_marked: bool,
    last_marker: bool,
    bad_packets: u64,
    rtcp: u64,
    damaged_units: u64,
    last_error: Option<RtpError>,
}

fn is_rtcp(b: &[u8]) -> bool {
    matches!(b, [v, pt, ..] if v >> 6 == 2 && (200..=204).contains(pt))
}

impl PsOverRtp {
    /// A receiver for one stream.
    pub fn new(config: ReorderConfig) -> Self {
        Self {
            reorder: Reorder::new(config),
            framer: TcpFramer::new(),
            demux: PsDemuxer::new(),
            keep_marked: false,
            last_marker: false,
            bad_packets: 0,
            rtcp: 0,
            damaged_units: 0,
            last_error: None,
        }
    }

    /// Whether a unit whose last packet had the marker bit is kept when a gap follows it (off by
    /// default: only trust it for devices that mark the end of each frame).
    pub fn keep_marked_unit(mut self, keep: bool) -> Self {
        self.keep_marked = keep;
        self
    }

    /// Takes one UDP datagram (one RTP packet) that came at `now`; returns the units completed.
    pub fn push_udp(&mut self, datagram: &[u8], now: Instant) -> Vec<PsUnit> {
        let mut out = Vec::new();
        if is_rtcp(datagram) {
            self.rtcp += 1;
        } else {
            let packet = RtpPacket::parse(datagram).map(|p| p.to_packet());
            self.take(packet, now, &mut out);
        }
        self.expire(now, &mut out);
        out
    }

    /// Takes the next bytes of a TCP stream that came at `now`; returns the units completed.
    pub fn push_tcp(&mut self, bytes: &[u8], now: Instant) -> Vec<PsUnit> {
        let mut out = Vec::new();
        for frame in self.framer.push(bytes) {
            if is_rtcp(&frame.data) {
                self.rtcp += 1;
            } else {
                self.take(Packet::from_bytes(&frame.data), now, &mut out);
            }
        }
        self.expire(now, &mut out);
        out
    }

    /// Gives up packets missing for the hold time by `now`: call it at [`PsOverRtp::next_deadline`]
    /// when no packet comes.
    pub fn flush(&mut self, now: Instant) -> Vec<PsUnit> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        out
    }

    /// The stream ended: everything held is given out, the last unit included.
    pub fn finish(&mut self) -> Vec<PsUnit> {
        let mut out = Vec::new();
        let items = self.reorder.flush();
        self.feed(items, &mut out);
        out.extend(self.demux.finish());
        self.last_marker = false;
        out
    }

    /// When [`PsOverRtp::flush`] will next have something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.reorder.next_deadline()
    }

    /// The counters.
    pub fn stats(&self) -> RtpStats {
        let (r, f) = (self.reorder.stats(), self.framer.stats());
        RtpStats {
            packets: r.packets,
            lost: r.lost,
            duplicates: r.duplicates,
            late: r.late,
            reordered: r.reordered,
            wrong_ssrc: r.wrong_ssrc,
            resets: r.resets,
            framing_errors: f.framing_errors,
            bad_packets: self.bad_packets,
            rtcp: self.rtcp,
            damaged_units: self.damaged_units,
        }
    }

    /// The demuxer's counters.
    pub fn ps_stats(&self) -> PsStats {
        self.demux.stats()
    }

    /// The demuxer (codec, stream map, last damage).
    pub fn demuxer(&self) -> &PsDemuxer {
        &self.demux
    }

    /// The TCP framing detected, if any.
    pub fn framing(&self) -> Option<Framing> {
        self.framer.framing()
    }

    /// The last packet that was not RTP, and why.
    pub fn last_error(&self) -> Option<RtpError> {
        self.last_error
    }

    fn take(&mut self, packet: Result<Packet, RtpError>, now: Instant, out: &mut Vec<PsUnit>) {
        match packet {
            Ok(p) => {
                let items = self.reorder.push(p, now);
                self.feed(items, out);
            }
            Err(e) => {
                tracing::debug!(%e, "not an RTP packet");
                self.bad_packets += 1;
                self.last_error = Some(e);
            }
        }
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<PsUnit>) {
        let items = self.reorder.poll(now);
        self.feed(items, out);
    }

    fn feed(&mut self, items: Vec<Ordered>, out: &mut Vec<PsUnit>) {
        for item in items {
            match item {
                Ordered::Packet(p) => {
                    out.extend(self.demux.push(&p.payload));
                    self.last_marker = p.marker;
                }
                Ordered::Gap { .. } | Ordered::Reset => self.discontinuity(out),
            }
        }
    }

    /// See the type's documentation for why `finish` and which unit is dropped.
    fn discontinuity(&mut self, out: &mut Vec<PsUnit>) {
        let dropped = self.demux.stats().dropped_units;
        let mut units = self.demux.finish();
        let demuxer_dropped = self.demux.stats().dropped_units > dropped;
        let whole = self.keep_marked && self.last_marker;
        if !units.is_empty() && !demuxer_dropped && !whole {
            units.pop();
            self.damaged_units += 1;
        }
        out.extend(units);
        self.last_marker = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
        /// Shuffles within consecutive blocks of `w`.
        fn shuffle<T>(&mut self, v: &mut [T], w: usize) {
            for block in v.chunks_mut(w) {
                for i in (1..block.len()).rev() {
                    block.swap(i, self.next() % (i + 1));
                }
            }
        }
    }

    fn rtp(seq: u16, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0x80, 96 | u8::from(marker) << 7];
        b.extend(seq.to_be_bytes());
        b.extend((u32::from(seq) * 3600).to_be_bytes());
        b.extend(ssrc.to_be_bytes());
        [&b[..], payload].concat()
    }

    fn pkt(seq: u16, ssrc: u32) -> Packet {
        Packet::from_bytes(&Bytes::from(rtp(seq, ssrc, false, &seq.to_be_bytes()))).unwrap()
    }

    /// What came out: sequence numbers, `-lost` for gaps, `-100000` for resets.
    fn seqs(items: &[Ordered]) -> Vec<i64> {
        let f = |o: &Ordered| match o {
            Ordered::Packet(p) => i64::from(p.sequence),
            Ordered::Gap { lost } => -i64::from(*lost),
            Ordered::Reset => -100_000,
        };
        items.iter().map(f).collect()
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        #[rustfmt::skip]
        let mut b = vec![0xB2, 0x80 | 96, 0xFF, 0xFE, 0, 1, 0x5F, 0x90, 0xDE, 0xAD, 0xBE, 0xEF];
        b.extend([0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78]); // two CSRCs
        b.extend([0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]); // one-word extension
        b.extend(b"PS data");
        b.extend([0, 0, 3]); // 3 bytes of padding
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!((p.marker, p.payload_type, p.sequence), (true, 96, 0xFFFE));
        assert_eq!((p.timestamp, p.ssrc, p.padding), (90_000, 0xDEADBEEF, 3));
        assert_eq!(p.csrcs().collect::<Vec<_>>(), [1, 0x12345678]);
        let ext = Extension {
            profile: 0xBEDE,
            data: &[0x10, 0xAA, 0, 0],
        };
        assert_eq!((p.extension, p.payload), (Some(ext), &b"PS data"[..]));
        let owned = Packet::from_bytes(&Bytes::from(b.clone())).unwrap();
        assert_eq!(
            (owned.sequence, &owned.payload[..]),
            (0xFFFE, &b"PS data"[..])
        );
        assert_eq!(p.to_packet(), owned);

        let plain = rtp(7, 42, false, b"");
        let p = RtpPacket::parse(&plain).unwrap();
        assert_eq!(
            (p.marker, p.sequence, p.ssrc, p.payload.len()),
            (false, 7, 42, 0)
        );
        assert_eq!((p.csrcs().count(), p.extension, p.padding), (0, None, 0));
    }

    #[test]
    fn malformed_packets_are_errors_never_panics() {
        use RtpError::*;
        let h = rtp(1, 2, false, b"");
        let with = |b0: u8, tail: &[u8]| [&[b0][..], &h[1..], tail].concat();
        #[rustfmt::skip]
        let cases: Vec<(Vec<u8>, RtpError)> = vec![
            (vec![], TooShort { len: 0 }),
            (h[..11].to_vec(), TooShort { len: 11 }),
            (with(0x40, b""), Version { version: 1, first: 0x40 }),
            (with(0x00, b"x"), Version { version: 0, first: 0 }),
            (with(0x8F, &[0; 20]), Overrun { part: "CSRC list", need: 72, len: 32 }),
            (with(0x90, &[0xBE]), Overrun { part: "header extension header", need: 16, len: 13 }),
            (with(0x90, &[0xBE, 0xDE, 0, 2, 1, 2, 3, 4]), Overrun { part: "header extension", need: 24, len: 20 }),
            (with(0xA0, b""), Padding { count: 0, room: 0 }),
            (with(0xA0, &[1, 2, 0]), Padding { count: 0, room: 3 }),
            (with(0xA0, &[1, 2, 4]), Padding { count: 4, room: 3 }),
        ];
        for (b, want) in &cases {
            assert_eq!(RtpPacket::parse(b), Err(*want), "{b:02x?}");
        }
        let msg = cases[4].1.to_string();
        assert_eq!(
            msg,
            "RTP CSRC list runs past the end: it needs 72 bytes, the packet has 32"
        );
        // Only padding: an empty payload.
        assert_eq!(
            RtpPacket::parse(&with(0xA0, &[0, 0, 3])).map(|p| p.payload.len()),
            Ok(0)
        );
        let mut rng = Lcg(1);
        for i in 0..20_000 {
            let mut b = rng.bytes(i % 80);
            if let Some(x) = b.first_mut() {
                *x = 0x80 | (*x & 0x3F);
            }
            if let Ok(p) = RtpPacket::parse(&b) {
                assert!(p.payload.len() + HEADER_LEN <= b.len());
            }
        }
    }

    #[test]
    fn shuffled_packets_across_the_wrap_come_out_in_order() {
        let t0 = Instant::now();
        let mut r = Reorder::new(ReorderConfig::default());
        let mut order: Vec<u16> = (0..300u16).map(|i| 65_400u16.wrapping_add(i)).collect();
        Lcg(7).shuffle(&mut order[1..], 8);
        let mut out = Vec::new();
        for (i, s) in order.iter().enumerate() {
            out.extend(r.push(pkt(*s, 9), t0 + Duration::from_millis(i as u64)));
            assert!(r.held() <= 64);
        }
        let want: Vec<i64> = (0..300u16)
            .map(|i| i64::from(65_400u16.wrapping_add(i)))
            .collect();
        assert_eq!(seqs(&out), want);
        let st = r.stats();
        assert_eq!(
            (st.packets, st.lost, st.duplicates, st.late),
            (300, 0, 0, 0)
        );
        assert!(st.reordered > 50, "{st:?}");
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn a_gap_is_given_up_after_the_hold_time_or_the_window() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let config = ReorderConfig {
            window: 4,
            max_hold: Duration::from_millis(100),
            ssrc: None,
        };
        let mut r = Reorder::new(config);
        let mut out = Vec::new();
        for (s, t) in [(65_534, 0), (65_535, 0), (1, 10), (2, 20)] {
            out.extend(r.push(pkt(s, 1), ms(t)));
        }
        assert_eq!(seqs(&out), [65_534, 65_535]);
        assert_eq!(r.next_deadline(), Some(ms(110)));
        assert!(r.poll(ms(109)).is_empty());
        assert_eq!(seqs(&r.poll(ms(110))), [-1, 1, 2]);
        // Too late: counted, dropped.
        assert!(r.push(pkt(0, 1), ms(111)).is_empty());
        // 3 and 4 missing; 8 does not fit a window of 4 (5..=8 would): 3 and 4 are given up.
        assert!(r.push(pkt(5, 1), ms(120)).is_empty());
        assert_eq!(seqs(&r.push(pkt(8, 1), ms(121))), [-2, 5]);
        assert_eq!(seqs(&r.push(pkt(6, 1), ms(122))), [6]);
        assert_eq!(seqs(&r.flush()), [-1, 8]);
        let st = r.stats();
        assert_eq!((st.packets, st.lost, st.late, st.resets), (7, 4, 1, 0));
    }

    #[test]
    fn duplicates_far_jumps_and_restarts() {
        let t0 = Instant::now();
        let mut r = Reorder::new(ReorderConfig::default());
        let mut out = Vec::new();
        for s in [10, 11, 13, 13, 11, 10, 12, 12] {
            out.extend(r.push(pkt(s, 5), t0));
        }
        assert_eq!(seqs(&out), [10, 11, 12, 13]);
        assert_eq!((r.stats().duplicates, r.stats().reordered), (4, 1));
        // A sender that restarted far away: a reset, then its packets.
        let out: Vec<_> = [40_000, 40_001]
            .iter()
            .flat_map(|s| r.push(pkt(*s, 5), t0))
            .collect();
        assert_eq!(seqs(&out), [-100_000, 40_000, 40_001]);
        // One that restarted just behind: late packets until the run says restart.
        let mut out = Vec::new();
        for i in 0..BEHIND_RESET {
            out.extend(r.push(pkt(39_900 + i, 5), t0));
        }
        assert_eq!(seqs(&out), [-100_000, 39_900 + i64::from(BEHIND_RESET) - 1]);
        let st = r.stats();
        assert_eq!((st.resets, st.late, st.duplicates), (2, 31, 4));
    }

    #[test]
    fn ssrc_expected_or_locked_on() {
        let t0 = Instant::now();
        let config = ReorderConfig {
            ssrc: Some(0x0100_0001),
            ..ReorderConfig::default()
        };
        let mut r = Reorder::new(config);
        let out: Vec<_> = (0..200u16)
            .flat_map(|s| r.push(pkt(s, 0x0200_0002), t0))
            .collect();
        assert!(out.is_empty());
        assert_eq!(seqs(&r.push(pkt(500, 0x0100_0001), t0)), [500]);
        assert_eq!(r.stats().wrong_ssrc, 200);

        let mut r = Reorder::new(ReorderConfig::default());
        let mut out = r.push(pkt(1, 7), t0);
        out.extend(r.push(pkt(2, 8), t0));
        out.extend(r.push(pkt(2, 7), t0));
        assert_eq!((seqs(&out), r.stats().wrong_ssrc), (vec![1, 2], 1));
        // Source 7 went silent; 8 keeps sending: after RELOCK_AFTER packets, 8 is the source.
        let out: Vec<_> = (0..RELOCK_AFTER)
            .flat_map(|s| r.push(pkt(900 + s, 8), t0))
            .collect();
        assert_eq!(seqs(&out), [-100_000, 900 + i64::from(RELOCK_AFTER) - 1]);
        assert_eq!(r.stats().wrong_ssrc, 1 + u64::from(RELOCK_AFTER) - 1);
    }

    fn frame(f: Framing, channel: u8, p: &[u8]) -> Vec<u8> {
        let len = (p.len() as u16).to_be_bytes();
        match f {
            Framing::Rfc4571 => [&len[..], p].concat(),
            Framing::Interleaved => [&[b'$', channel][..], &len, p].concat(),
        }
    }

    /// Pushes `s` in chunks of `sizes()` bytes, checking the bound.
    fn frame_all(s: &[u8], mut sizes: impl FnMut() -> usize) -> (Vec<TcpPacket>, TcpFramer) {
        let (mut fr, mut out, mut rest) = (TcpFramer::new(), Vec::new(), s);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(sizes().clamp(1, rest.len()));
            out.extend(fr.push(chunk));
            assert!(fr.buffered() <= MAX_TCP_HELD, "{}", fr.buffered());
            rest = tail;
        }
        (out, fr)
    }

    #[test]
    fn tcp_framer_both_framings_any_chunking_garbage_between() {
        let mut rng = Lcg(11);
        let packets: Vec<Vec<u8>> = (0..120u16)
            .map(|i| {
                rtp(
                    i,
                    3,
                    i % 5 == 0,
                    &rng.bytes([0, 1, 700, 1400, 3000][i as usize % 5]),
                )
            })
            .collect();
        let rtcp_rr = [0x80, 201, 0, 1, 0, 0, 0, 3];
        for f in [Framing::Rfc4571, Framing::Interleaved] {
            // Garbage before the first packet and in three places; an RTCP RR on channel 1.
            // A frame too short for RTP (10 bytes).
            let bad_len = frame(f, 0, &[0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0]);
            let mut s = [&[0x80, 0, 9][..], &rng.bytes(50)].concat();
            for (i, p) in packets.iter().enumerate() {
                s.extend(frame(f, 0, p));
                if i == 10 {
                    s.extend(frame(f, 1, &rtcp_rr));
                }
                if [30, 60, 90].contains(&i) {
                    s.extend(if i == 30 {
                        bad_len.clone()
                    } else {
                        [&[7, 0, 0][..], &rng.bytes(i * 3)].concat()
                    });
                }
            }
            for round in 0..4 {
                let mut r = Lcg(round);
                let (got, fr) = match round {
                    0 => frame_all(&s, || 1),
                    1 => frame_all(&s, || usize::MAX),
                    _ => frame_all(&s, || 1 + r.next() % 2500),
                };
                let mut want: Vec<&[u8]> = packets.iter().map(|p| &p[..]).collect();
                want.insert(11, &rtcp_rr);
                assert_eq!(
                    got.iter().map(|p| &p.data[..]).collect::<Vec<_>>(),
                    want,
                    "{f:?} {round}"
                );
                assert_eq!(got[11].channel, (f == Framing::Interleaved).then_some(1));
                let st = fr.stats();
                assert_eq!(
                    (fr.framing(), st.packets, st.framing_errors),
                    (Some(f), 121, 4),
                    "{f:?}"
                );
                assert_eq!(fr.buffered(), 0);
            }
        }
        // A big chunk ending inside a packet: the buffer shrinks, the packet's start is kept.
        let big: Vec<u8> = (0..200)
            .flat_map(|i| frame(Framing::Rfc4571, 0, &packets[i % 120]))
            .collect();
        let mut fr = TcpFramer::new();
        let (head, tail) = big.split_at(big.len() - 5);
        let n = fr.push(head).len();
        assert!(fr.buffered() <= MAX_TCP_HELD && fr.buf.capacity() <= 2 * MAX_TCP_HELD);
        assert_eq!((n, fr.push(tail).len()), (199, 1));
        // Random bytes: no panic, bounded, and every packet cut out is at least 8 bytes.
        let noise = rng.bytes(300_000);
        let (got, _) = frame_all(&noise, || 1 + rng.next() % 5000);
        assert!(got.iter().all(|p| p.data.len() >= 8));
    }

    /// `(seq, bytes)` of each packet, `segments` of PS cut into ≤1400-byte payloads, marker last.
    fn packetize(segments: &[Vec<u8>]) -> Vec<(usize, Vec<u8>)> {
        let mut seq = 65_300u16;
        let mut out = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let chunks: Vec<_> = seg.chunks(1400).collect();
            for (j, c) in chunks.iter().enumerate() {
                out.push((i, rtp(seq, 0x0100_0002, j + 1 == chunks.len(), c)));
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    /// mpegpsmux's PS, a pack header put before each frame's PES as devices send it: the segments.
    fn gst_frames() -> Option<Vec<Vec<u8>>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ps");
        let pipeline = "-q videotestsrc num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1 \
            ! x264enc key-int-max=25 bframes=0 ! h264parse ! mpegpsmux ! filesink location=";
        let args = format!("{pipeline}{}", path.display());
        let out = match std::process::Command::new("gst-launch-1.0")
            .args(args.split(' '))
            .output()
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED: gst-launch-1.0 is not installed");
                return None;
            }
            r => r.unwrap(),
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ps = std::fs::read(&path).unwrap();
        assert_eq!(&ps[..4], [0, 0, 1, 0xBA]);
        let pack = ps[..14 + usize::from(ps[13] & 7)].to_vec();
        let mut starts: Vec<usize> = ps
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == [0, 0, 1, 0xE0])
            .map(|(i, _)| i)
            .collect();
        starts[0] = 0;
        starts.push(ps.len());
        Some(
            starts
                .windows(2)
                .map(|w| [&pack[..], &ps[w[0]..w[1]]].concat())
                .collect(),
        )
    }

    /// Runs the packets through UDP and TCP (both framings), shuffled within 6, with one lost.
    fn run(
        packets: &[(usize, Vec<u8>)],
        lost: usize,
        keep_marked: bool,
    ) -> Vec<(Vec<PsUnit>, RtpStats)> {
        let mut order: Vec<&[u8]> = packets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != lost)
            .map(|(_, p)| &p.1[..])
            .collect();
        Lcg(5).shuffle(&mut order, 6);
        let config = ReorderConfig {
            window: 64,
            max_hold: Duration::from_millis(50),
            ssrc: Some(0x0100_0002),
        };
        let t0 = Instant::now();
        let mut results = Vec::new();
        for path in 0..3 {
            let mut rx = PsOverRtp::new(config).keep_marked_unit(keep_marked);
            let mut units = Vec::new();
            if path == 0 {
                for (i, p) in order.iter().enumerate() {
                    units.extend(rx.push_udp(p, t0 + Duration::from_millis(i as u64)));
                }
            } else {
                let f = [Framing::Rfc4571, Framing::Interleaved][path - 1];
                let s: Vec<u8> = order.iter().flat_map(|p| frame(f, 0, p)).collect();
                let mut rng = Lcg(path as u64);
                let mut rest = &s[..];
                for i in 0.. {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, tail) = rest.split_at((1 + rng.next() % 3000).min(rest.len()));
                    units.extend(rx.push_tcp(chunk, t0 + Duration::from_millis(i)));
                    rest = tail;
                }
                assert_eq!(rx.framing(), Some(f));
            }
            units.extend(rx.finish());
            results.push((units, rx.stats()));
        }
        results
    }

    #[test]
    fn gstreamer_ps_over_rtp_udp_and_tcp_with_a_loss() {
        let Some(segments) = gst_frames() else { return };
        assert_eq!(segments.len(), 50);
        let packets = packetize(&segments);
        let frame_of = |k: usize| packets[k].0;
        // A packet inside frame 37 (neither its first nor its last).
        let mid = (1..packets.len() - 1)
            .find(|k| frame_of(*k) == 37 && frame_of(k - 1) == 37 && frame_of(k + 1) == 37)
            .unwrap();
        // The first packet of frame 40 (the one before it has the marker).
        let first = (1..packets.len())
            .find(|k| frame_of(*k) == 40 && frame_of(k - 1) == 39)
            .unwrap();
        for (lost, keep, missing) in [
            (mid, false, vec![37]),
            (first, false, vec![39, 40]),
            (first, true, vec![40]),
        ] {
            for (path, (units, st)) in run(&packets, lost, keep).into_iter().enumerate() {
                let p0 = units[0].pts_90k.unwrap();
                let frames: Vec<u64> = units
                    .iter()
                    .map(|u| (u.pts_90k.unwrap() - p0) / 3600)
                    .collect();
                let want: Vec<u64> = (0..50).filter(|i| !missing.contains(i)).collect();
                assert_eq!(frames, want, "path {path}, lost packet {lost}, keep {keep}");
                let keys: Vec<usize> = (0..units.len()).filter(|i| units[*i].keyframe).collect();
                assert_eq!(keys, [0, 25]);
                assert!(units[25].has_sps && units[25].has_pps);
                assert_eq!(
                    (st.lost, st.damaged_units, st.duplicates, st.late),
                    (1, u64::from(!keep), 0, 0),
                    "{st:?}"
                );
                assert_eq!(
                    (st.packets, st.bad_packets, st.framing_errors),
                    (packets.len() as u64 - 1, 0, 0)
                );
                assert!(st.reordered > 20, "{st:?}");
            }
        }
    }

    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        let t0 = Instant::now();
        let mut rng = Lcg(21);
        let mut rx = PsOverRtp::new(ReorderConfig::default());
        for i in 0..5_000u64 {
            let n = rng.next() % 1500;
            let mut d = rng.bytes(n);
            if i % 2 == 0 && d.len() > 12 {
                d[0] = 0x80;
            }
            rx.push_udp(&d, t0 + Duration::from_millis(i));
            assert!(rx.reorder.held() <= 64);
        }
        let noise = rng.bytes(500_000);
        for c in noise.chunks(777) {
            rx.push_tcp(c, t0);
            assert!(rx.framer.buffered() <= MAX_TCP_HELD);
        }
        rx.finish();
        assert!(rx.stats().bad_packets > 0 && rx.last_error().is_some());
    }
}
