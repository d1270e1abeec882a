//! Video of simulated GB/T 28181 devices: the prepared clip (RTP payloads, see [`super::media`])
//! turned back into access units, muxed as MPEG-PS the way devices write it (a pack header before
//! every frame; system header and program stream map before every keyframe; PES of at most
//! ~64 KiB with the PTS in the first) and sent as RTP (payload type 96, marker on a frame's last
//! packet) over UDP, or over TCP with RFC 4571 framing.
//!
//! Written here rather than with GStreamer's `mpegpsmux`: that muxer writes a pack header only
//! every few frames (a platform then loses everything up to the next one after a lost packet) and
//! no stream map GB/T 28181 platforms look for; devices do what is written here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::media::{Codec, Frame, Media, aggregated};

/// RTP payload bytes per packet (a packet fits a 1500-byte MTU).
const RTP_PAYLOAD: usize = 1400;
/// PES payload at most (the 16-bit length also counts the PES header).
const PES_PAYLOAD: usize = 65_000;

/// The Annex-B access unit of a prepared frame (start codes, FU/STAP/AP packets undone).
pub fn annexb(codec: Codec, frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    let start = |out: &mut Vec<u8>| out.extend_from_slice(&[0, 0, 0, 1]);
    for p in &frame.packets {
        let b = &p.payload[..];
        let Some(&b0) = b.first() else { continue };
        match codec {
            Codec::H264 => match b0 & 0x1f {
                24 => {
                    for nal in aggregated(&b[1..]) {
                        start(&mut out);
                        out.extend_from_slice(nal);
                    }
                }
                28 if b.len() >= 2 => {
                    let fu = b[1];
                    if fu & 0x80 != 0 {
                        start(&mut out);
                        out.push((b0 & 0xe0) | (fu & 0x1f));
                    }
                    out.extend_from_slice(&b[2..]);
                }
                _ => {
                    start(&mut out);
                    out.extend_from_slice(b);
                }
            },
            Codec::H265 => match (b0 >> 1) & 0x3f {
                48 if b.len() >= 2 => {
                    for nal in aggregated(&b[2..]) {
                        start(&mut out);
                        out.extend_from_slice(nal);
                    }
                }
                49 if b.len() >= 3 => {
                    let fu = b[2];
                    if fu & 0x80 != 0 {
                        start(&mut out);
                        out.push((b0 & 0x81) | ((fu & 0x3f) << 1));
                        out.push(b[1]);
                    }
                    out.extend_from_slice(&b[3..]);
                }
                _ => {
                    start(&mut out);
                    out.extend_from_slice(b);
                }
            },
        }
    }
    out
}

/// CRC-32/MPEG-2 (the stream map's).
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One frame as MPEG-PS: pack header (SCR = `pts`), on keyframes the system header and stream
/// map, then the access unit in PES packets.
pub fn ps_frame(codec: Codec, au: &[u8], pts: u64, keyframe: bool) -> Vec<u8> {
    let scr = pts & ((1 << 33) - 1);
    let mut out = Vec::with_capacity(au.len() + 64);
    // Pack header (MPEG-2), mux rate 50,000 × 50 bytes/s, no stuffing.
    let mux_rate: u32 = 50_000;
    out.extend_from_slice(&[
        0,
        0,
        1,
        0xba,
        0x44 | ((scr >> 27) as u8 & 0x38) | ((scr >> 28) as u8 & 0x03),
        (scr >> 20) as u8,
        0x04 | ((scr >> 12) as u8 & 0xf8) | ((scr >> 13) as u8 & 0x03),
        (scr >> 5) as u8,
        0x04 | ((scr << 3) as u8 & 0xf8),
        0x01,
        (mux_rate >> 14) as u8,
        (mux_rate >> 6) as u8,
        ((mux_rate << 2) as u8 & 0xfc) | 0x03,
        0xf8,
    ]);
    if keyframe {
        // System header: one video stream.
        let rate_bound = mux_rate;
        out.extend_from_slice(&[
            0,
            0,
            1,
            0xbb,
            0,
            9,
            0x80 | ((rate_bound >> 15) as u8 & 0x7f),
            (rate_bound >> 7) as u8,
            ((rate_bound << 1) as u8) | 0x01,
            0x00,
            0xe1,
            0xff,
            0xe0,
            0xe0 | 0x20 | 0x01,
            0x80,
        ]);
        // Program stream map: video 0xE0 of type 0x1B (H.264) or 0x24 (H.265).
        let stream_type = match codec {
            Codec::H264 => 0x1b,
            Codec::H265 => 0x24,
        };
        let mut psm = vec![
            0,
            0,
            1,
            0xbc,
            0,
            14,
            0xe0,
            0xff,
            0,
            0,
            0,
            4,
            stream_type,
            0xe0,
            0,
            0,
        ];
        let crc = crc32_mpeg2(&psm);
        psm.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&psm);
    }
    for (i, chunk) in au.chunks(PES_PAYLOAD).enumerate() {
        let with_pts = i == 0;
        let header_len: usize = if with_pts { 5 } else { 0 };
        let len = 3 + header_len + chunk.len();
        out.extend_from_slice(&[0, 0, 1, 0xe0]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(0x80);
        if with_pts {
            out.extend_from_slice(&[
                0x80,
                5,
                0x21 | ((pts >> 29) as u8 & 0x0e),
                (pts >> 22) as u8,
                0x01 | ((pts >> 14) as u8 & 0xfe),
                (pts >> 7) as u8,
                0x01 | ((pts << 1) as u8 & 0xfe),
            ]);
        } else {
            out.extend_from_slice(&[0x00, 0]);
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// A PS frame as RTP packets (payload type 96, marker on the last, `ts` the 90 kHz timestamp),
/// sequence numbers from `seq` on; with `tcp` each prefixed by its 2-byte length (RFC 4571).
pub fn rtp_packets(ps: &[u8], seq: &mut u16, ts: u32, ssrc: u32, tcp: bool) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = ps.chunks(RTP_PAYLOAD).collect();
    let last = chunks.len().saturating_sub(1);
    let mut out = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut packet = Vec::with_capacity(14 + chunk.len());
        if tcp {
            packet.extend_from_slice(&((12 + chunk.len()) as u16).to_be_bytes());
        }
        packet.push(0x80);
        packet.push(if i == last { 0x80 | 96 } else { 96 });
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&ts.to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(chunk);
        *seq = seq.wrapping_add(1);
        out.push(packet);
    }
    out
}

/// Where a device sends its video.
#[derive(Debug)]
pub enum Destination {
    /// RTP over UDP to the platform's address.
    Udp(SocketAddr),
    /// RTP over TCP: the device connects to the platform's address (the offer's `a=setup:passive`).
    Tcp(SocketAddr),
    /// RTP over TCP: the platform connects to the device's port (the offer's `a=setup:active`);
    /// the first connection is the stream.
    Accept(tokio::net::TcpListener),
}

/// What one device's senders did.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Streams started (INVITEs answered 200).
    pub streams: AtomicU64,
    /// Streams running now.
    pub active: AtomicU64,
    /// RTP packets sent.
    pub packets: AtomicU64,
    /// Streams ended by the platform's BYE.
    pub byes: AtomicU64,
    /// TCP connections the platform opened to the device (TCP active).
    pub accepted: AtomicU64,
}

/// Sends the clip from its start, looping, in real time, until `stop`; while `stalled` is set the
/// frames go by unsent (the `stall` fault: signalling goes on, video stops).
pub async fn send(
    media: Arc<Media>,
    socket: Option<tokio::net::UdpSocket>,
    to: Destination,
    ssrc: u32,
    stalled: Arc<AtomicBool>,
    stats: Arc<MediaStats>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let (mut tcp, udp_to) = match to {
        Destination::Tcp(addr) => (
            Some(
                tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??,
            ),
            None,
        ),
        Destination::Accept(listener) => {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                a = tokio::time::timeout(Duration::from_secs(10), listener.accept()) => a,
            };
            let (stream, _) = accepted
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "accept"))??;
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            (Some(stream), None)
        }
        Destination::Udp(addr) => (None, Some(addr)),
    };
    let clip = &media.normal;
    let start = tokio::time::Instant::now();
    let mut seq: u16 = rand::random();
    let mut lap: u64 = 0;
    loop {
        for frame in &clip.frames {
            let at = lap * clip.duration + frame.ts;
            let due = start + Duration::from_micros(at * 1_000_000 / 90_000);
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(due) => {}
            }
            if stalled.load(Ordering::Relaxed) {
                continue;
            }
            let pts = at + u64::from(frame.cts);
            let au = annexb(media.codec, frame);
            let ps = ps_frame(media.codec, &au, pts, frame.keyframe);
            for packet in rtp_packets(&ps, &mut seq, pts as u32, ssrc, tcp.is_some()) {
                match (&mut tcp, &socket, udp_to) {
                    (Some(stream), _, _) => stream.write_all(&packet).await?,
                    (None, Some(socket), Some(addr)) => {
                        // A platform not listening (yet, or any more) costs the packet only.
                        let _ = socket.send_to(&packet, addr).await;
                    }
                    _ => return Ok(()),
                }
                stats.packets.fetch_add(1, Ordering::Relaxed);
            }
        }
        lap += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_map_crc_is_mpeg2() {
        // CRC-32/MPEG-2 check value of "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    /// What is written here is read back by the platform's demuxer, keyframe and PTS included,
    /// across a PES split.
    #[test]
    fn the_platforms_demuxer_reads_what_devices_write() {
        use crate::gb28181::ps::PsDemuxer;
        let sps = [0u8, 0, 0, 1, 0x67, 0x42, 0, 0x1e];
        let pps = [0u8, 0, 0, 1, 0x68, 0xce, 0x38, 0x80];
        let mut idr = vec![0u8, 0, 0, 1, 0x65];
        idr.extend((0..150_000u32).map(|i| (i % 200 + 1) as u8));
        let key = [&sps[..], &pps[..], &idr[..]].concat();
        let p = vec![0u8, 0, 0, 1, 0x41, 0x9a, 1, 2, 3];
        let mut stream = ps_frame(Codec::H264, &key, 90_000, true);
        stream.extend(ps_frame(Codec::H264, &p, 93_600, false));
        stream.extend(ps_frame(Codec::H264, &p, 97_200, false));
        let mut demux = PsDemuxer::new();
        let mut units = demux.push(&stream);
        units.extend(demux.finish());
        assert_eq!(units.len(), 3, "{units:?}");
        assert!(units[0].keyframe && units[0].has_sps && units[0].has_pps);
        assert_eq!(&units[0].data[..], &key[..]);
        assert_eq!(units[0].pts_90k, Some(90_000));
        assert_eq!(units[1].pts_90k, Some(93_600));
        assert!(!units[2].keyframe);
        assert_eq!(&units[2].data[..], &p[..]);
    }
}
