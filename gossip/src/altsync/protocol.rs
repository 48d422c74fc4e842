//! The libp2p side of `payload_by_number`: both protocol ids and the request-response codec
//! (framing in [`super::read_response`] and [`super::write_response`]).

use super::PayloadResponse;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};
use std::io;

/// Both protocol ids for `chain_id`: op-node's first, then the spec's (trailing slash).
pub fn protocols(chain_id: u64) -> Vec<StreamProtocol> {
    let base = format!("/opstack/req/payload_by_number/{chain_id}/0");
    [base.clone(), format!("{base}/")]
        .into_iter()
        .filter_map(|p| StreamProtocol::try_from_owned(p).ok())
        .collect()
}

/// The wire codec of `payload_by_number` for libp2p's request-response behaviour.
#[derive(Clone, Debug, Default)]
pub struct PayloadByNumberCodec;

impl request_response::Codec for PayloadByNumberCodec {
    type Protocol = StreamProtocol;
    type Request = u64;
    type Response = PayloadResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<u64>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut buf = [0u8; 8];
        io.read_exact(&mut buf).await?;
        Ok(u64::from_le_bytes(buf))
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<PayloadResponse>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        super::read_response(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: u64) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&req.to_le_bytes()).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: PayloadResponse,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        super::write_response(io, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::altsync::RESULT_NOT_FOUND;

    #[test]
    fn protocol_ids_with_and_without_slash() {
        let p = protocols(901);
        assert_eq!(p[0].as_ref(), "/opstack/req/payload_by_number/901/0");
        assert_eq!(p[1].as_ref(), "/opstack/req/payload_by_number/901/0/");
    }

    #[test]
    fn wire_roundtrip() {
        use libp2p::request_response::Codec;
        futures::executor::block_on(async {
            let proto = protocols(1)[0].clone();
            let mut c = PayloadByNumberCodec;
            let mut buf = Vec::new();
            c.write_request(&proto, &mut futures::io::Cursor::new(&mut buf), 42).await.unwrap();
            assert_eq!(buf, 42u64.to_le_bytes());
            assert_eq!(c.read_request(&proto, &mut buf.as_slice()).await.unwrap(), 42);
            let res = PayloadResponse::Ok { version: 2, payload: vec![7; 5000] };
            let mut buf = Vec::new();
            c.write_response(&proto, &mut futures::io::Cursor::new(&mut buf), res.clone())
                .await
                .unwrap();
            assert_eq!(buf[0], 0);
            assert_eq!(&buf[1..5], &2u32.to_le_bytes());
            // Snappy framing starts with the stream identifier chunk.
            assert_eq!(&buf[5..9], &[0xff, 0x06, 0x00, 0x00]);
            assert_eq!(c.read_response(&proto, &mut buf.as_slice()).await.unwrap(), res);
            let mut buf = Vec::new();
            c.write_response(
                &proto,
                &mut futures::io::Cursor::new(&mut buf),
                PayloadResponse::Err(RESULT_NOT_FOUND),
            )
            .await
            .unwrap();
            assert_eq!(buf, vec![1]);
            assert_eq!(
                c.read_response(&proto, &mut buf.as_slice()).await.unwrap(),
                PayloadResponse::Err(1)
            );
        });
    }
}
