-- Progress of pipeline flows: how far each flow has read each of its streaming sources.
-- (Files a flow has read are in ingested_files under the key '<table id>|<flow>'.)
-- The Delta log of the target table is the truth; this is its index.
CREATE TABLE flow_offsets (
    flow_key TEXT NOT NULL,
    source   TEXT NOT NULL,
    value    BIGINT NOT NULL,
    PRIMARY KEY (flow_key, source)
);
