//! RTP for GB/T 28181 media: PS over RTP, reordering, RFC 4571 framing over TCP.
