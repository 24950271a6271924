"""DataFormatError names file, record and field, and survives pickling (process pools, Ray)."""

import pickle

from vloss.data.errors import DataFormatError


def test_message_and_pickle_round_trip():
    e = DataFormatError("a.json", "must be positive", field="bbox", record="annotation id 7")
    assert str(e) == "a.json [annotation id 7] field 'bbox': must be positive"
    back = pickle.loads(pickle.dumps(e))
    assert isinstance(back, DataFormatError) and str(back) == str(e)
    assert (back.path, back.field, back.record) == ("a.json", "bbox", "annotation id 7")
