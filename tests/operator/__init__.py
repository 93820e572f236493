"""Tests of the whoiscrawl operator."""
