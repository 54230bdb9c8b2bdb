-- Where each router must start reading a partition so that no unfinished order
-- is missed: the offset of the partition's oldest unfinished submission.
CREATE SCHEMA IF NOT EXISTS router;

CREATE TABLE router.resume_positions (
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    resume_offset bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
