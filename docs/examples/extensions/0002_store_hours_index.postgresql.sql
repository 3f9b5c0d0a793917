CREATE INDEX IF NOT EXISTS contosoretailstorehours_store ON ext.contosoretailstorehourstable (retailstoretable, day);
