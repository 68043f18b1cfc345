//! Prefill and the decode loop for one request.
