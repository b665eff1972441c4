-- The schema of the server before versioned schemas, with a little data: two users (a third,
-- id 3, was removed), an image each and an unfinished upload.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    length INTEGER NOT NULL,
    received INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    mtime INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    image_id INTEGER,
    lock_holder TEXT,
    lock_until INTEGER
);
CREATE INDEX uploads_expiry ON uploads(expires_at);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    identifier TEXT,
    name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    format TEXT,
    mtime INTEGER,
    uploaded_at INTEGER NOT NULL,
    UNIQUE (user_id, digest)
);
-- The test puts the BLAKE3 hashes of the tokens in place of ALICE_HASH and BOB_HASH.
INSERT INTO users VALUES (1, 'alice', 'ALICE_HASH', 0);
INSERT INTO users VALUES (2, 'bob', 'BOB_HASH', 0);
INSERT INTO users VALUES (3, 'gone', 'x', 0);
DELETE FROM users WHERE id = 3;
INSERT INTO images VALUES (1, 1, 'aa00000000000000000000000000000000000000000000000000000000000000', NULL, 'a.jpg', 3, NULL, NULL, NULL, NULL, 0);
INSERT INTO images VALUES (2, 2, 'bb00000000000000000000000000000000000000000000000000000000000000', NULL, 'b.jpg', 3, NULL, NULL, NULL, NULL, 0);
INSERT INTO uploads VALUES ('0123456789abcdef0123456789abcdef', 1, 10, 0, '', 'c.jpg', 'cc00000000000000000000000000000000000000000000000000000000000000', NULL, 0, 4000000000, NULL, NULL, NULL);
