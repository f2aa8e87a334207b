//! FlyMQ binary client protocol.
