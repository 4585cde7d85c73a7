//! Ports. For now the in-memory port that tests and benches use; AF_XDP and
//! AF_PACKET ports join it with the same receive/transmit shape.

pub mod mem;
