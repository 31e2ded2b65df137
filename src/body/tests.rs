use std::{collections::VecDeque, task::Waker};

use super::*;

/// One poll's answer.
type Step = Poll<Option<Result<Frame<Bytes>, &'static str>>>;

/// A body that answers each poll with the next step of a script.
struct Script(VecDeque<Step>);

impl Body for Script {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        self.get_mut().0.pop_front().unwrap_or(Poll::Ready(None))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn data(bytes: &[u8]) -> Step {
    Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(bytes)))))
}

/// What each poll of `body` gives, until the end, as text: `data:…`, `trailers`,
/// `error:…`, `pending`; and whether the body said it had ended after each.
fn polls(body: &mut Coalesced<Script>) -> Vec<(String, bool)> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut seen = Vec::new();
    loop {
        let step = match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(None) => return seen,
            Poll::Pending => "pending".to_owned(),
            Poll::Ready(Some(Err(error))) => format!("error:{error}"),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => format!("data:{}", String::from_utf8_lossy(&data)),
                Err(_) => "trailers".to_owned(),
            },
        };
        seen.push((step, body.is_end_stream()));
    }
}

fn coalesced(script: Vec<Step>) -> Coalesced<Script> {
    Coalesced::new(Script(script.into()))
}

fn step(text: &str, ended: bool) -> (String, bool) {
    (text.to_owned(), ended)
}

#[test]
fn pieces_ready_together_go_out_as_one_frame_that_ends_the_body() {
    let mut body = coalesced(vec![data(b"a"), data(b"b"), data(b"c"), Poll::Ready(None)]);
    assert_eq!(polls(&mut body), [step("data:abc", true)]);
}

#[test]
fn what_is_read_goes_out_when_the_upstream_has_nothing_more_ready() {
    // A trickling exporter: nothing waits for the next piece.
    let mut body = coalesced(vec![
        data(b"a"),
        data(b"b"),
        Poll::Pending,
        data(b"c"),
        Poll::Pending,
        Poll::Pending,
        data(b"d"),
    ]);
    assert_eq!(
        polls(&mut body),
        [
            step("data:ab", false),
            step("data:c", false),
            step("pending", false),
            step("data:d", true),
        ]
    );
}

#[test]
fn joined_frames_stay_within_the_bound() {
    let piece = vec![b'x'; COALESCE_BYTES / 2 + 1];
    let mut body = coalesced(vec![data(&piece), data(&piece), data(&piece)]);
    let mut cx = Context::from_waker(Waker::noop());
    let mut sizes = Vec::new();
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        sizes.push(frame.unwrap().into_data().unwrap().len());
    }
    assert_eq!(sizes, [piece.len(); 3]);

    let quarter = vec![b'y'; COALESCE_BYTES / 4];
    let script = std::iter::repeat_with(|| data(&quarter)).take(6).collect();
    let mut body = coalesced(script);
    let mut sizes = Vec::new();
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        sizes.push(frame.unwrap().into_data().unwrap().len());
    }
    assert_eq!(sizes, [COALESCE_BYTES, COALESCE_BYTES / 2]);
}

#[test]
fn a_large_piece_passes_through_uncopied() {
    let page = Bytes::from(vec![b'z'; COALESCE_BYTES * 2]);
    let mut body = coalesced(vec![Poll::Ready(Some(Ok(Frame::data(page.clone()))))]);
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) else {
        panic!("no frame");
    };
    assert_eq!(frame.into_data().unwrap().as_ptr(), page.as_ptr());
}

#[test]
fn trailers_and_errors_come_after_the_data_read_before_them() {
    let trailers = Poll::Ready(Some(Ok(Frame::trailers(http::HeaderMap::new()))));
    let mut body = coalesced(vec![data(b"a"), data(b"b"), trailers]);
    assert_eq!(
        polls(&mut body),
        [step("data:ab", false), step("trailers", true)]
    );

    let mut body = coalesced(vec![
        data(b"a"),
        Poll::Ready(Some(Err("reset"))),
        data(b"b"),
    ]);
    assert_eq!(
        polls(&mut body),
        [
            step("data:a", false),
            step("error:reset", false),
            step("data:b", true)
        ]
    );
}

#[test]
fn size_hint_counts_a_held_piece() {
    let big = vec![b'q'; COALESCE_BYTES - 1];
    let mut body = coalesced(vec![data(&big), data(b"ab"), Poll::Pending]);
    let mut cx = Context::from_waker(Waker::noop());
    let _ = Pin::new(&mut body).poll_frame(&mut cx);
    assert_eq!(body.size_hint().lower(), 2);
    assert!(!body.is_end_stream());
}

#[test]
fn an_empty_body_ends_at_once() {
    let mut body: Coalesced<http_body_util::Empty<Bytes>> =
        Coalesced::new(http_body_util::Empty::new());
    assert!(body.is_end_stream());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        Pin::new(&mut body).poll_frame(&mut cx),
        Poll::Ready(None)
    ));
}
