"""EDI X12 beside the partner API: 204 load tenders out, 990 / 214 in, 997 acknowledgements both ways."""
