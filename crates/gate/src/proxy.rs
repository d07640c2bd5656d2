//! Reading a PROXY protocol v1/v2 header from a trusted proxy, within a size bound. The caller
//! bounds the time.

use std::net::{IpAddr, SocketAddr};

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("connection ended after {0} bytes, before the PROXY header was complete")]
    Eof(usize),
    #[error("PROXY header larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a PROXY v1/v2 header: {0}")]
    Invalid(String),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// A parsed header: the client address it carries (`None` for LOCAL/UNKNOWN, which mean "the
/// proxy itself"), and the bytes read past it, to be forwarded first.
#[derive(Debug)]
pub(crate) struct Header {
    pub source: Option<SocketAddr>,
    pub leftover: Vec<u8>,
}

pub(crate) async fn read_header(sock: &mut TcpStream, max: usize) -> Result<Header, HeaderError> {
    let mut buf = Vec::with_capacity(256.min(max));
    loop {
        if buf.len() >= max {
            return Err(HeaderError::TooLarge(max));
        }
        if buf.capacity() == buf.len() {
            buf.reserve((max - buf.len()).min(buf.len().max(256)));
        }
        // Read no further than the limit.
        let room = (max - buf.len()).min(buf.capacity() - buf.len());
        let mut chunk = (&mut *sock).take(room as u64);
        let n = chunk.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(HeaderError::Eof(buf.len()));
        }
        let parsed = HeaderResult::parse(&buf);
        if parsed.is_incomplete() {
            // v2 announces its length: refuse early when it cannot fit.
            if let HeaderResult::V2(Err(v2::ParseError::Partial(_, len))) = &parsed
                && 16 + len > max
            {
                return Err(HeaderError::TooLarge(max));
            }
            continue;
        }
        let (len, source) = match parsed {
            HeaderResult::V1(Ok(h)) => (
                h.header.len(),
                match h.addresses {
                    v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                    }
                    v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                    }
                    v1::Addresses::Unknown => None,
                },
            ),
            HeaderResult::V2(Ok(h)) => (
                h.header.len(),
                match (h.command, h.addresses) {
                    (v2::Command::Local, _) => None,
                    (_, v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                    }
                    (_, v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                    }
                    // A PROXY command without an IP source carries no address to decide on.
                    (_, a) => {
                        return Err(HeaderError::Invalid(format!(
                            "v2 PROXY with address family {:?}",
                            a.address_family()
                        )));
                    }
                },
            ),
            HeaderResult::V1(Err(e)) => return Err(HeaderError::Invalid(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(HeaderError::Invalid(e.to_string())),
        };
        let leftover = buf.split_off(len);
        return Ok(Header { source, leftover });
    }
}
